"""`sl2s patterns`: every event the plan does not predict, grouped and counted.

Kinds of deviation:

- `error` — a failure (an event with an exception) of an error group (fingerprint: exception type
  and the user's frames) not seen before: a brand-new exception at a step that failed before
  otherwise is new;
- `unknown template` — a step event whose (flow, step) is not in the plan, or whose template
  differs from the plan's;
- `wrong machine` — a planned step logged by another machine than the plan's;
- `out of order` — within one correlation id, in causal order, a step that is not the plan's next
  one (a skipped, repeated or reordered step, or a run starting mid-flow);
- `stopped early` — a run whose last step is not its flow's last step (failed or cut short);
- `log line` — user log lines (`sl2s.log` events) mined with Drain (drain3), after masking numbers,
  IPs, UUIDs and hex ids with `*`, so that lines differing only in such values are one pattern;
- `unexpected event` — any other event name (`sl2s.hop_failed`, `sl2s.deviation`, …).

One streaming pass: per-event checks as lines arrive; per correlation id only a compact causal
link `(event hash, cause hash, plan index, arrival)` is kept, ordered and checked at the end.

State (`--new-since STATE`): JSON with the pattern keys seen so far and the Drain model (so a log
pattern keeps its identity as its template generalises). Only patterns absent from the state are
reported, each with the events before and after its first occurrence; the state is then updated.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.model import Plan
from sl2s.observe import events as ev
from sl2s.observe.fingerprint import event_fingerprint
from sl2s.observe.mining import (
    MiningOptions,
    add_line,
    make_miner,
    masker,
    miner_state,
    resolve,
    shown,
)
from sl2s.observe.textlog import TEXT

STATE_VERSION = 1
CONTEXT = 2  # events shown before and after a new pattern's first occurrence

KINDS = (
    "error",
    "unknown template",
    "wrong machine",
    "out of order",
    "stopped early",
    "log line",
    "unexpected event",
)


@dataclass
class Pattern:
    kind: str
    key: str
    text: str
    count: int = 0
    first_at: str = ""
    machines: set[str] = field(default_factory=set)
    example: str = ""  # a correlation id showing it
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    new: bool = True
    members: list[str] = field(default_factory=list)  # FILE:LINE, when asked for

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "key": self.key,
            "text": self.text,
            "count": self.count,
            "first_at": self.first_at,
            "machines": sorted(self.machines),
            "example": self.example,
            "before": self.before,
            "after": self.after,
            "new": self.new,
        }

    def as_json_line(self) -> dict:
        """What `--format json` prints for it: one object per pattern, for tools."""
        return {
            "kind": self.kind,
            "template": self.text,
            "count": self.count,
            "members": self.members,
            "first": self.first_at,
            "machines": sorted(self.machines),
            "new": self.new,
            "before": self.before,
            "after": self.after,
        }


def _short(source: str, lineno: int, event: dict) -> str:
    a = ev.attrs(event)
    if event.get("event_name") == TEXT:
        return f"{Path(source).name}:{lineno}  {event.get('severity_text', '')}  {event.get('body', '')}"
    what = a.get("sl2s.step") or event.get("event_name") or ""
    return (
        f"{Path(source).name}:{lineno}  {ev.machine(event)}  {event.get('severity_text', '')}  "
        f"{a.get('sl2s.flow', '')}/{what}: {event.get('body', '')}"
    )


class Analyzer:
    """Feed events (any order across files), then `finish()` for the patterns found."""

    def __init__(
        self,
        plan: Plan | None,
        *,
        seen: Iterable[str] = (),
        drain_state: str | None = None,
        options: MiningOptions | None = None,
        keep_members: bool = False,
    ) -> None:
        self.plan = plan
        self.steps = plan.steps if plan is not None else []
        flows = plan.flows if plan is not None else []
        self.index = {(s.flow, s.id): i for i, s in enumerate(self.steps)}
        self.first_of_flow = {
            f.name: self.index[(f.name, f.steps[0].id)] for f in flows if f.steps
        }
        self.last_of_flow = {
            f.name: self.index[(f.name, f.steps[-1].id)] for f in flows if f.steps
        }
        self.keep_members = keep_members
        self.seen = set(seen)
        self.patterns: dict[str, Pattern] = {}
        # per run, four integers per event for the order checks at the end (event id's hash,
        # its cause's, its plan step, its arrival), packed: 32 bytes an event, not ~200 as tuples
        self.runs: dict[str, array] = {}
        self.arrival = 0
        self.options = options or MiningOptions()
        self.miner = make_miner(self.options, drain_state)
        self.mask = masker(self.options)
        self._recent: dict[str, deque] = {}
        self._pending: dict[str, list[list]] = {}  # source -> [[pattern, remaining]]
        self._text_patterns: dict[int, Pattern] = (
            {}
        )  # cluster id -> its text lines' pattern
        self.events = 0

    # ------------------------------------------------------------------------- streaming part

    def feed(self, source: str, lineno: int, event: dict) -> None:
        if event.get("event_name") == TEXT:
            self._feed_text(source, lineno, event)
            return
        self.events += 1
        short = None
        pending = self._pending.get(source)
        if pending:
            short = _short(source, lineno, event)
            for item in pending:
                item[0].after.append(short)
                item[1] -= 1
            self._pending[source] = [item for item in pending if item[1] > 0]
        a = ev.attrs(event)
        name = event.get("event_name") or ev.STEP
        cid = a.get("sl2s.correlation_id")
        machine = ev.machine(event)
        g = -1
        if "exception.type" in a:
            fp = event_fingerprint(event)
            if fp is not None:
                where = a.get("sl2s.raised_at") or a.get("code.filepath") or "?"
                self._hit(
                    "error",
                    f"error|{fp}",
                    f"{a['exception.type']} at {where} ({'/'.join(str(x) for x in (a.get('sl2s.flow'), a.get('sl2s.step') or name) if x)})",
                    source,
                    lineno,
                    event,
                    cid,
                )
        if name == ev.STEP:
            flow, step = a.get("sl2s.flow"), a.get("sl2s.step")
            g = self.index.get((str(flow), str(step)), -1)
            planned = self.steps[g] if g >= 0 else None
            template = a.get("sl2s.template")
            if planned is None or (
                template is not None and template != planned.template
            ):
                # a known step id with another template is still that step for the order checks
                self._hit(
                    "unknown template",
                    f"unknown template|{flow}|{template or step}",
                    f'{flow}: "{template or step}"',
                    source,
                    lineno,
                    event,
                    cid,
                )
            elif machine != planned.machine:
                self._hit(
                    "wrong machine",
                    f"wrong machine|{flow}|{step}|{machine}",
                    f'{flow}/{step} ("{planned.template}") logged on {machine}, planned on {planned.machine}',
                    source,
                    lineno,
                    event,
                    cid,
                )
        elif name == ev.LOG or name == TEXT:
            body = str(event.get("body") or "")
            cluster = add_line(self.miner, self.mask, body)
            self._hit(
                "log line",
                f"log line|{cluster}",
                "",
                source,
                lineno,
                event,
                cid,
                cluster=cluster,
            )
        else:
            masked = shown(self.mask(str(event.get("body") or "")))
            self._hit(
                "unexpected event",
                f"unexpected event|{name}|{masked}",
                f"{name}: {masked}",
                source,
                lineno,
                event,
                cid,
            )
        if cid:
            eid = a.get("sl2s.event_id")
            cause = a.get("sl2s.causation_id")
            self.arrival += 1
            links = self.runs.get(cid)
            if links is None:
                links = self.runs[cid] = array("q")
            links.extend(
                (
                    hash(eid) if eid else -self.arrival,
                    hash(cause) if cause else 0,
                    g,
                    self.arrival,
                )
            )
        recent = self._recent.get(source)
        if recent is None:
            recent = self._recent[source] = deque(maxlen=CONTEXT)
        recent.append((lineno, event) if short is None else (lineno, event, short))

    def _feed_text(self, source: str, lineno: int, event: dict) -> None:
        """`feed` for a plain-text line (sl2s.observe.textlog): mined, counted; nothing else."""
        self.events += 1
        short = None
        pending = self._pending.get(source)
        if pending:
            short = _short(source, lineno, event)
            for item in pending:
                item[0].after.append(short)
                item[1] -= 1
            self._pending[source] = [item for item in pending if item[1] > 0]
        cluster = add_line(self.miner, self.mask, event["body"])
        pattern = self._text_patterns.get(cluster)
        if pattern is None:
            key = f"log line|{cluster}"
            self._hit("log line", key, "", source, lineno, event, None, cluster=cluster)
            pattern = self._text_patterns[cluster] = self.patterns[key]
        else:
            pattern.count += 1
            pattern.machines.add(event["attributes"]["sl2s.machine"])
            if self.keep_members:
                pattern.members.append(f"{source}:{lineno}")
        recent = self._recent.get(source)
        if recent is None:
            recent = self._recent[source] = deque(maxlen=CONTEXT)
        recent.append((lineno, event) if short is None else (lineno, event, short))

    def _hit(self, kind, key, text, source, lineno, event, cid, cluster=None) -> None:
        pattern = self.patterns.get(key)
        if pattern is None:
            pattern = self.patterns[key] = Pattern(
                kind, key, text, new=key not in self.seen
            )
            pattern.first_at = f"{source}:{lineno}"
            pattern.example = cid or ""
            if pattern.new:
                recent = self._recent.get(source) or ()
                pattern.before = [
                    item[2] if len(item) > 2 else _short(source, item[0], item[1])
                    for item in recent
                ]
                self._pending.setdefault(source, []).append([pattern, CONTEXT])
        pattern.count += 1
        pattern.machines.add(ev.machine(event))
        if self.keep_members:
            pattern.members.append(f"{source}:{lineno}")

    # ------------------------------------------------------------------------- end of stream

    def finish(self) -> list[Pattern]:
        for cid, packed in self.runs.items():
            fields = iter(packed)
            self._check_run(cid, list(zip(fields, fields, fields, fields)))
        self.runs.clear()
        self._merge_log_lines()
        for pattern in self.patterns.values():
            if pattern.kind == "log line":
                cluster_id = int(pattern.key.split("|", 1)[1])
                cluster = self.miner.drain.id_to_cluster.get(cluster_id)
                pattern.text = (
                    shown(cluster.get_template()) if cluster is not None else "?"
                )
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(
            self.patterns.values(), key=lambda p: (order[p.kind], -p.count, p.key)
        )

    def _merge_log_lines(self) -> None:
        """Log-line patterns whose clusters were merged (mining.add_line) after their first
        lines: one pattern, under the first cluster's key (their lines in the order seen).
        """
        aliases = self.miner.sl2s_aliases
        if not aliases:
            return
        for key in list(self.patterns):
            pattern = self.patterns[key]
            if pattern.kind != "log line":
                continue
            cluster_id = int(key.split("|", 1)[1])
            target = resolve(aliases, cluster_id)
            if target == cluster_id:
                continue
            into_key = f"log line|{target}"
            into = self.patterns.get(into_key)
            del self.patterns[key]
            if into is None:  # its first cluster had no line here: it takes that key
                pattern.key = into_key
                pattern.new = into_key not in self.seen
                self.patterns[into_key] = pattern
                continue
            into.count += pattern.count
            into.machines |= pattern.machines
            into.members.extend(pattern.members)

    def _check_run(self, cid: str, links: list[tuple[int, int, int, int]]) -> None:
        ids = {link[0] for link in links}
        children: dict[int, list] = {}
        for link in links:
            cause = link[1] if link[1] in ids and link[1] != link[0] else 0
            children.setdefault(cause, []).append(link)
        ordered: list[int] = []
        stack = sorted(children.get(0, ()), key=lambda x: x[3], reverse=True)
        visited = 0
        while stack:
            link = stack.pop()
            visited += 1
            if visited > len(links):
                break  # a causation cycle: give up on this run's order
            if link[2] >= 0:
                ordered.append(link[2])
            stack.extend(
                sorted(children.get(link[0], ()), key=lambda x: x[3], reverse=True)
            )
        if not ordered:
            return
        steps = self.steps
        previous = None
        for g in ordered:
            s = steps[g]
            if previous is None:
                if g != self.first_of_flow[s.flow]:
                    self._run_hit(
                        "out of order",
                        f"out of order|{s.flow}|^|{s.id}",
                        f"{s.flow}: run starts at {s.id!r}, not at {steps[self.first_of_flow[s.flow]].id!r}",
                        cid,
                        None,
                        g,
                    )
            elif not (g == previous + 1 and steps[previous].flow == s.flow):
                p = steps[previous]
                expected = (
                    steps[previous + 1].id
                    if previous + 1 < len(steps) and steps[previous + 1].flow == p.flow
                    else "(end of flow)"
                )
                self._run_hit(
                    "out of order",
                    f"out of order|{s.flow}|{p.id}|{s.id}",
                    f"{s.flow}: {s.id!r} after {p.id!r} (plan: {expected!r})",
                    cid,
                    previous,
                    g,
                )
            previous = g
        last = steps[ordered[-1]]
        if ordered[-1] != self.last_of_flow[last.flow]:
            final = steps[self.last_of_flow[last.flow]]
            self._run_hit(
                "stopped early",
                f"stopped early|{last.flow}|{last.id}",
                f"{last.flow}: stopped after {last.id!r} on {last.machine}, before its last step {final.id!r}",
                cid,
                ordered[-1],
                None,
            )

    def _run_hit(self, kind, key, text, cid, before_g, after_g) -> None:
        pattern = self.patterns.get(key)
        if pattern is None:
            pattern = self.patterns[key] = Pattern(
                kind, key, text, new=key not in self.seen
            )
            pattern.first_at = f"correlation id {cid}"
            pattern.example = cid
            if pattern.new:
                if before_g is not None:
                    s = self.steps[before_g]
                    pattern.before = [f"{s.machine}  {s.flow}/{s.id}: {s.template}"]
                if after_g is not None:
                    s = self.steps[after_g]
                    pattern.after = [f"{s.machine}  {s.flow}/{s.id}: {s.template}"]
        pattern.count += 1
        target = self.steps[after_g if after_g is not None else before_g]
        pattern.machines.add(target.machine)


# --------------------------------------------------------------------------------- state (I/O)


def load_state(path: Path) -> dict:
    if not path.exists():
        return {"version": STATE_VERSION, "seen": {}, "drain": None}
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise Sl2sError(f"{path}: not a patterns state file ({error})") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise Sl2sError(
            f"{path}: not a patterns state file (version {STATE_VERSION} expected)"
        )
    return data


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------- rendering


def render_text(
    patterns: list[Pattern],
    events: int,
    files: int,
    with_state: bool,
    plain: bool = False,
) -> str:
    out = []
    for p in patterns:
        mark = "NEW  " if with_state else ""
        out.append(
            f"{mark}{p.kind}  {p.count}x  {p.text}  [{', '.join(sorted(p.machines))}; first: {p.first_at}]"
        )
        for line in p.before:
            out.append(f"      before: {line}")
        for line in p.after:
            out.append(f"      after:  {line}")
    what = (
        "new pattern(s)"
        if with_state
        else "pattern(s)" if plain else "pattern(s) the plan does not predict"
    )
    unit = "lines" if plain else "events"
    out.append(f"{len(patterns)} {what} in {events} {unit} from {files} file(s)")
    return "\n".join(out) + "\n"


def render_markdown(
    patterns: list[Pattern],
    events: int,
    files: int,
    with_state: bool,
    plain: bool = False,
) -> str:
    what = (
        "New patterns"
        if with_state
        else "Patterns" if plain else "Patterns the plan does not predict"
    )
    out = [
        f"### {what}",
        "",
        f"{len(patterns)} in {events} events from {files} file(s).",
        "",
    ]
    if patterns:
        out += [
            "| kind | count | pattern | machines | first |",
            "|---|---|---|---|---|",
        ]
        for p in patterns:
            cell = p.text.replace("|", "\\|")
            out.append(
                f"| {p.kind} | {p.count} | `{cell}` | {', '.join(sorted(p.machines))} | {p.first_at} |"
            )
        out.append("")
    return "\n".join(out)


def render_json(patterns: list[Pattern]) -> str:
    return "".join(orjson.dumps(p.as_json_line()).decode() + "\n" for p in patterns)


def analyse(
    plan: Plan | None,
    paths: Iterable[str],
    state: dict | None = None,
    *,
    text: bool = False,
    prefix=None,
    options: MiningOptions | None = None,
    keep_members: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Pattern], Analyzer, ev.ReadStats]:
    """Patterns of event files (`text=False`) or plain-text logs (`text=True`, lines split by
    sl2s.observe.textlog with `prefix`, a compiled regex or None for the default).
    `progress(done, total)`: bytes of the files read."""
    stats = ev.ReadStats()
    analyzer = Analyzer(
        plan,
        seen=(state or {}).get("seen", {}).keys(),
        drain_state=(state or {}).get("drain"),
        options=options,
        keep_members=keep_members,
    )
    if text:
        from sl2s.observe.textlog import iter_text, text_files

        files = text_files(paths)
        items = iter_text(files, prefix, stats)
    else:
        files = ev.event_files(paths)
        items = ev.iter_events(files, stats)
    if progress is not None:
        stats.progress, stats.total = progress, ev.files_size(files)
    feed = analyzer._feed_text if text else analyzer.feed
    for source, lineno, event in items:
        feed(source, lineno, event)
    return analyzer.finish(), analyzer, stats


def state_options(
    state: dict | None, given: MiningOptions | None
) -> MiningOptions | None:
    """The mining options to use with a state file: the ones it was written with (a state from
    before options were recorded: similarity 0.4, depth 4, the default masks); different options
    given explicitly are an error, since the saved model would not match them."""
    if not state or not state.get("drain"):
        return given
    raw = state.get("mining") or {"similarity": 0.4, "depth": 4}
    saved = MiningOptions(
        similarity=float(raw.get("similarity", 0.4)),
        depth=int(raw.get("depth", 4)),
        masks=tuple(raw.get("masks") or MiningOptions().masks),
        extra_masks=tuple(raw.get("extra_masks") or ()),
    )
    if given is not None and given != saved:
        raise Sl2sError(
            "the state file was written with other mining options "
            f"({saved.as_dict()}); use them, or start a new state file"
        )
    return saved


def run_patterns(
    plan_path: str | None,
    paths: Iterable[str],
    state_path: str | None,
    fmt: str = "text",
    *,
    text: bool = False,
    prefix: str | None = None,
    options: MiningOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, bool]:
    """Shell-facing: (report, whether anything new was found); updates the state file.

    `options` None: the defaults (or the state file's). With `text`, `paths` are plain-text logs
    and `plan_path` is not used."""
    from sl2s.observe.textlog import compile_prefix
    from sl2s.plan import read_plan

    if fmt not in ("text", "markdown", "json"):
        raise Sl2sError(f"unknown format {fmt!r} (text, markdown or json)")
    if options is not None:
        try:
            options.check()
        except ValueError as error:
            raise Sl2sError(str(error)) from None
    plan = None if text or plan_path is None else read_plan(plan_path)
    state = load_state(Path(state_path)) if state_path else None
    options = state_options(state, options)
    patterns, analyzer, stats = analyse(
        plan,
        paths,
        state,
        text=text,
        prefix=compile_prefix(prefix),
        options=options,
        keep_members=fmt == "json",
        progress=progress,
    )
    new = [p for p in patterns if p.new] if state is not None else patterns
    if state is not None:
        seen = dict(state.get("seen") or {})
        for p in patterns:
            entry = seen.setdefault(p.key, {"kind": p.kind, "text": p.text, "count": 0})
            entry["count"] = int(entry.get("count", 0)) + p.count
            entry["text"] = p.text
        assert state_path is not None  # (a state was loaded from it)
        save_state(
            Path(state_path),
            {
                "version": STATE_VERSION,
                "plan": {"path": plan.path, "digest": plan.digest} if plan else None,
                "seen": seen,
                "drain": miner_state(analyzer.miner),
                "mining": analyzer.options.as_dict(),
            },
        )
    if fmt == "json":
        return render_json(new), bool(new)
    render = render_markdown if fmt == "markdown" else render_text
    report = render(new, analyzer.events, stats.files, state is not None, plain=text)
    if not text and stats.skipped:
        report += (
            f"note: {stats.skipped} line(s) were not sl2s events (first: {stats.skipped_at[0]}); "
            "read plain-text logs with --text\n"
        )
    return report, bool(new)
