"""`sl2s story`: one flow run across every machine's log, in causal order.

Two streaming passes over the files, never holding more than one run in memory: the first finds
which correlation id to tell (`--last`, `--failed`, `--event`), the second collects that run's
events (raw lines are pre-filtered by the id's bytes before JSON parsing). Ordering and rendering
are pure functions over the collected events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sl2s.diagnostics import Sl2sError
from sl2s.observe import events as ev


@dataclass(frozen=True)
class Selection:
    correlation_id: str | None = None
    last: bool = False
    failed: bool = False
    event_id: str | None = None


def select_run(
    files: list[Path], selection: Selection, stats: ev.ReadStats | None = None
) -> str:
    """The correlation id to tell: given, or found in a first pass over the files."""
    if selection.correlation_id:
        return selection.correlation_id
    best_key: tuple = ()
    best: str | None = None
    needle = selection.event_id.encode() if selection.event_id else None
    for _source, _lineno, event in ev.iter_events(files, stats, contains=needle):
        cid = ev.correlation_id(event)
        if not cid:
            continue
        if selection.event_id:
            if ev.event_id(event) == selection.event_id:
                return cid
            continue
        if selection.failed and not ev.is_failure(event):
            continue
        key = (event.get("timestamp") or "", cid)
        if key > best_key:
            best_key, best = key, cid
    if best is None:
        if selection.event_id:
            raise Sl2sError(f"no event with id {selection.event_id} in the logs given")
        if selection.failed:
            raise Sl2sError("no failed run in the logs given")
        raise Sl2sError("no flow run in the logs given")
    return best


def collect_run(
    files: list[Path], cid: str, stats: ev.ReadStats | None = None
) -> list[dict]:
    """Every event of one run (deduplicated by event id: incident files repeat machine logs)."""
    found: dict[str, dict] = {}
    anonymous: list[dict] = []
    for _source, _lineno, event in ev.iter_events(files, stats, contains=cid.encode()):
        if ev.correlation_id(event) != cid:
            continue
        eid = ev.event_id(event)
        if eid is None:
            anonymous.append(event)
        else:
            found.setdefault(eid, event)
    return list(found.values()) + anonymous


def causal_order(events: Iterable[dict]) -> list[tuple[dict, dict | None]]:
    """(event, its cause or None) in causal order: a cause before its effects, time second.

    Roots (no cause, or a cause not in the logs) and siblings are ordered by timestamp, so clock
    skew between machines never puts an effect before its cause.
    """
    events = list(events)
    by_id = {ev.event_id(e): e for e in events if ev.event_id(e)}
    children: dict[str | None, list[dict]] = {}
    for e in events:
        cause = ev.causation_id(e)
        if cause not in by_id or cause == ev.event_id(e):
            cause = None
        children.setdefault(cause, []).append(e)

    def key(e: dict) -> tuple:
        return (e.get("timestamp") or "", ev.event_id(e) or "")

    ordered: list[tuple[dict, dict | None]] = []
    visited: set[int] = set()
    stack: list[tuple[dict, dict | None]] = [
        (e, None) for e in sorted(children.get(None, []), key=key, reverse=True)
    ]
    while stack:
        e, parent = stack.pop()
        if id(e) in visited:
            continue
        visited.add(id(e))
        ordered.append((e, parent))
        kids = children.get(ev.event_id(e), []) if ev.event_id(e) else []
        stack.extend((k, e) for k in sorted(kids, key=key, reverse=True))
    # a causation cycle (corrupt logs) leaves events unvisited: append them by time
    for e in sorted((e for e in events if id(e) not in visited), key=key):
        ordered.append((e, None))
    return ordered


@dataclass(frozen=True)
class Line:
    kind: str  # "event" | "hop"
    machine: str
    text: str
    delta_ms: float | None = None
    elapsed_ms: float | None = None
    step: str = ""
    flow: str = ""
    severity: str = ""
    location: str = ""
    hop_kind: str = ""
    source: str = ""
    target: str = ""
    marked: bool = False  # the event asked for with --event
    event_id: str = ""
    fields: tuple[
        tuple[str, object], ...
    ] = ()  # what the step saw (as logged: secrets ***)


@dataclass(frozen=True)
class Story:
    correlation_id: str
    flows: tuple[str, ...]
    machines: tuple[str, ...]
    lines: tuple[Line, ...]
    stopped: str
    failed: bool


def build_story(cid: str, events: Iterable[dict], mark: str | None = None) -> Story:
    ordered = causal_order(events)
    if not ordered:
        raise Sl2sError(f"no events for correlation id {cid}")
    start = ev.parse_time(ordered[0][0].get("timestamp"))
    lines: list[Line] = []
    stack: list[str] = []
    machines: dict[str, None] = {}
    flows: dict[str, None] = {}
    previous_machine: str | None = None
    for event, parent in ordered:
        a = ev.attrs(event)
        m = ev.machine(event)
        machines.setdefault(m, None)
        if a.get("sl2s.flow"):
            flows.setdefault(a["sl2s.flow"], None)
        if previous_machine is not None and m != previous_machine:
            if m in stack:
                while stack and stack[-1] != m:
                    stack.pop()
                kind = "return"
            else:
                stack.append(m)
                kind = "call"
            lines.append(
                Line(
                    "hop",
                    m,
                    f"{kind} {previous_machine} -> {m}",
                    hop_kind=kind,
                    source=previous_machine,
                    target=m,
                )
            )
        elif not stack:
            stack.append(m)
        previous_machine = m
        when = ev.parse_time(event.get("timestamp"))
        cause_time = (
            ev.parse_time(parent.get("timestamp")) if parent is not None else None
        )
        delta = (
            (when - cause_time).total_seconds() * 1000 if when and cause_time else None
        )
        elapsed = (when - start).total_seconds() * 1000 if when and start else None
        location = a.get("sl2s.plan") or ""
        lines.append(
            Line(
                "event",
                m,
                str(event.get("body") or a.get("sl2s.template") or ""),
                delta_ms=delta,
                elapsed_ms=elapsed,
                step=str(a.get("sl2s.step") or event.get("event_name") or ""),
                flow=str(a.get("sl2s.flow") or ""),
                severity=str(event.get("severity_text") or ""),
                location=location,
                marked=mark is not None and ev.event_id(event) == mark,
                event_id=ev.event_id(event) or "",
                fields=_fields(a),
            )
        )
    last = ordered[-1][0]
    failures = [e for e, _ in ordered if ev.is_failure(e)]
    stop_event = failures[0] if failures else last
    sa = ev.attrs(stop_event)
    where = f"{ev.machine(stop_event)} {sa.get('sl2s.flow', '')}/{sa.get('sl2s.step') or stop_event.get('event_name', '')}"
    links = [x for x in (sa.get("sl2s.plan"), _source_link(sa)) if x]
    link_text = f" [{', '.join(links)}]" if links else ""
    if failures:
        exc = sa.get("exception.type")
        message = sa.get("exception.message") or stop_event.get("body") or ""
        what = f"{exc}: {message}" if exc else str(message)
        stopped = f"stopped with {stop_event.get('severity_text') or 'ERROR'} at {where}: {what}{link_text}"
    else:
        stopped = f"last event at {where}{link_text}"
    return Story(
        cid, tuple(flows), tuple(machines), tuple(lines), stopped, bool(failures)
    )


def _fields(a: dict) -> tuple[tuple[str, object], ...]:
    fields = a.get("sl2s.fields")
    return tuple(fields.items()) if isinstance(fields, dict) else ()


def fields_text(fields) -> str:
    """`username=ann password=***` (values other than strings as compact JSON)."""
    import orjson

    return " ".join(
        f"{k}={v if isinstance(v, str) else orjson.dumps(v).decode()}"
        for k, v in fields
    )


def _event_ref(event_id: str, base: str) -> str:
    if not event_id:
        return ""
    if base:
        return f"  {base.rstrip('/')}/event/{event_id}"
    return f"  #{event_id}"


def _source_link(a: dict) -> str:
    path, line = a.get("code.filepath"), a.get("code.lineno")
    if not path:
        return ""
    return f"{path}:{line}" if line else str(path)


def _ms(value: float | None) -> str:
    return "" if value is None else f"+{value:.1f} ms"


def render_text(story: Story, base: str = "") -> str:
    """The story as text; with `base` (the console's URL) a permalink per run and event, else
    each event's id."""
    header = (
        f"run {story.correlation_id} (flow {', '.join(story.flows) or '?'}): "
        f"{sum(1 for x in story.lines if x.kind == 'event')} events on "
        f"{len(story.machines)} machine(s): {', '.join(story.machines)}"
    )
    if base:
        header += f"  {base.rstrip('/')}/run/{story.correlation_id}"
    out = [header]
    width = max((len(x.machine) for x in story.lines), default=0)
    for x in story.lines:
        if x.kind == "hop":
            out.append(f"{'':>11}  -- {x.text}")
            continue
        sev = "" if x.severity in ("", "INFO") else f"{x.severity} "
        loc = f"  [{x.location}]" if x.location else ""
        out.append(
            f"{'>' if x.marked else ' '}{_ms(x.delta_ms):>10}  {x.machine:<{width}}  "
            f"{x.step}: {sev}{x.text}{loc}{_event_ref(x.event_id, base)}"
        )
        if x.fields:
            out.append(f"{'':>11}  {'':<{width}}  fields: {fields_text(x.fields)}")
    out.append(story.stopped)
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(story: Story, base: str = "") -> str:
    out = [
        f"### Run `{story.correlation_id}` (flow {', '.join(story.flows) or '?'})",
        "",
        "| # | after cause | machine | step | message | plan | fields | event |",
        "|---|---|---|---|---|---|---|---|",
    ]
    n = 0
    for x in story.lines:
        if x.kind == "hop":
            out.append(
                f"| | | | *{x.hop_kind}* | {_md(x.source)} → {_md(x.target)} | |"
            )
            continue
        n += 1
        sev = "" if x.severity in ("", "INFO") else f"**{x.severity}** "
        if x.marked:
            sev = "⮕ " + sev
        out.append(
            f"| {n} | {_ms(x.delta_ms)} | {_md(x.machine)} | `{_md(x.step)}` | {sev}{_md(x.text)} "
            f"| {_md(x.location)} | {_md(fields_text(x.fields))} | {_md_event(x.event_id, base)} |"
        )
    out += ["", f"**{'Stopped' if story.failed else 'End'}:** {_md(story.stopped)}", ""]
    return "\n".join(out)


def _md_event(event_id: str, base: str) -> str:
    if not event_id:
        return ""
    if base:
        return f"[`{event_id}`]({base.rstrip('/')}/event/{event_id})"
    return f"`{event_id}`"


def tell(
    paths: Iterable[str],
    selection: Selection,
    fmt: str = "text",
    base: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, bool]:
    """Shell-facing: (rendered story, whether the run failed). `progress(done, total)`: bytes
    read of the one or two passes over the files."""
    files = ev.event_files(paths)
    if not files:
        raise Sl2sError("no event files in the paths given")
    stats = None
    if progress is not None:
        passes = 1 if selection.correlation_id else 2
        total = passes * ev.files_size(files)
        stats = ev.ReadStats(progress=progress, total=total)
    cid = select_run(files, selection, stats)
    story = build_story(cid, collect_run(files, cid, stats), mark=selection.event_id)
    if fmt == "markdown":
        return render_markdown(story, base), story.failed
    if fmt != "text":
        raise Sl2sError(f"unknown format {fmt!r} (text or markdown)")
    return render_text(story, base), story.failed
