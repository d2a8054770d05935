"""`sl2s watch`: follow logs live and announce what is new.

Sources: local files and directories (`*.jsonl` are sl2s events; other files, and with `text`
the `*.log`/`*.txt` of directories, are plain-text logs, sl2s.observe.textlog), followed by
polling their sizes; and served machines (`urls`), followed through their signed long-poll
endpoint (sl2s.observe.follow), one thread each.

The core, `Watch.feed(source, lineno, event, where)` and `Watch.tick(now)`, turns events into
announcements (sl2s.observe.announce):

- a failure (an event with `exception.type`) is recorded in the error store
  (sl2s.observe.errorstore, shared with `sl2s errors`); a `new` or `reactivated` outcome is
  announced — once per run (correlation id): the caller's `sl2s.hop_failed` after the callee's
  error is the same failure;
- log lines and other events go through the pattern analysis (sl2s.observe.patterns, with the
  plan when one is given); a pattern key not seen before is announced with the lines before it;
- a run whose last event is a failure, or (with a plan) that stopped before its flow's last step,
  `settle` seconds after its last event: a `stopped early` key not seen before is announced.

What was already in the files when the watch started is read first and learnt silently (unless
`announce_existing`): the watch announces what is new from then on. Seen pattern keys and the
mining model are kept in `<state>/watch-patterns.json` (saved every 30 s and at exit).
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.observe import events as ev
from sl2s.observe.announce import Announcement, Gate
from sl2s.observe.errors import occurrence
from sl2s.observe.errorstore import ErrorStore
from sl2s.observe.mining import shown
from sl2s.observe.patterns import Analyzer, _short, load_state, save_state
from sl2s.observe.textlog import as_event, split_line

BEFORE = 3  # lines shown before an announced event
SAVE_EVERY = 30.0


class _LiveAnalyzer(Analyzer):
    """The pattern analysis, streaming only: per-run order checks are left to `Watch`, and a
    pattern key seen for the first time is handed to `on_new`."""

    def __init__(self, *args, on_new: Callable, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_new = on_new

    def feed(self, source, lineno, event) -> None:
        if self.plan is None and event.get("event_name", ev.STEP) == ev.STEP:
            return  # without a plan a step event predicts nothing
        super().feed(source, lineno, event)
        self.runs.clear()

    def _hit(self, kind, key, text, source, lineno, event, cid, cluster=None) -> None:
        if kind == "error":
            return  # errors are the error store's (with states, reactivation)
        fresh = key not in self.patterns
        super()._hit(kind, key, text, source, lineno, event, cid, cluster)
        if fresh and self.patterns[key].new:
            self.on_new(self.patterns[key], source, lineno, event, cid, cluster)


@dataclass
class _Run:
    flow: str | None
    step: str | None
    machine: str
    failed: bool
    seen: float
    source: str = ""
    before: list[str] = field(default_factory=list)
    lines: deque = field(default_factory=lambda: deque(maxlen=BEFORE))


class Watch:
    def __init__(
        self,
        store: ErrorStore,
        state_path: Path,
        *,
        plan=None,
        options=None,
        settle: float = 2.0,
        run_link: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.state_path = state_path
        self.state = load_state(state_path)
        from sl2s.observe.patterns import state_options

        options = state_options(self.state, options)
        self.analyzer = _LiveAnalyzer(
            plan,
            seen=(self.state.get("seen") or {}).keys(),
            drain_state=self.state.get("drain"),
            options=options,
            on_new=self._new_pattern,
        )
        self.plan = plan
        self.settle = settle
        self.run_link = run_link
        self.clock = clock
        self.runs: OrderedDict[str, _Run] = OrderedDict()
        self.announced_runs: OrderedDict[str, None] = OrderedDict()
        self.recent: dict[str, deque] = {}
        self.learning = False
        self.out: list[Announcement] = []
        self.events = 0

    # -------------------------------------------------------------------------------- events

    def _before(self, source: str, cid: str | None = None) -> list[str]:
        """The lines before: the run's own (any machine) when it is known, else the file's."""
        run = self.runs.get(cid) if cid else None
        if run is not None and run.lines:
            return list(run.lines)
        return list(self.recent.get(source) or ())

    def feed(self, source: str, lineno: int, event: dict, where=None) -> None:
        """One event; `where` (host, revision, environment) is a dict or a function giving it."""
        self.events += 1
        a = ev.attrs(event)
        cid = a.get("sl2s.correlation_id")
        short = _short(source, lineno, event)
        if "exception.type" in a:
            # where it ran is read now (a deploy may just have changed the revision)
            self._failure(
                source,
                lineno,
                event,
                cid,
                (where() if callable(where) else where) or {},
            )
        self.analyzer.feed(source, lineno, event)
        if cid:
            self._track(cid, event, a, source, short)
        recent = self.recent.get(source)
        if recent is None:
            recent = self.recent[source] = deque(maxlen=BEFORE)
        recent.append(short)

    def _failure(self, source, lineno, event, cid, where) -> None:
        o = occurrence(
            event,
            host=where.get("host"),
            revision=where.get("revision"),
            environment=where.get("environment"),
        )
        if o is None:
            return
        group, outcome = self.store.record(o)
        if outcome not in ("new", "reactivated") or self.learning:
            return
        if cid and cid in self.announced_runs:
            return  # the same failure seen again on the way up (hop_failed)
        if cid:
            self._remember_run(cid)
        suspect = self.store.suspected_deploy(group)
        kind = "new error" if outcome == "new" else "reactivated error"
        key = f"error|{group.fingerprint}|{outcome}|{group.reactivations}"
        details = {
            "line": group.raised_at,
            "revision": o.revision,
            "suspected": suspect.short() if suspect else None,
            "host": o.host,
            "count": f"{group.count}x" if group.count > 1 else None,
        }
        if outcome == "reactivated":
            details["first"] = (
                f"{group.first_seen} (resolved in {group.revisions_before or '-'})"
            )
        self.out.append(
            Announcement(
                kind,
                key,
                f"{group.exception_type}: {group.message}  [{group.fingerprint}]",
                where=f"{o.machine} {group.flow}/{group.step}; {Path(source).name}:{lineno}",
                before=self._before(source, cid),
                correlation_id=cid,
                link=self._link(cid),
                details=details,
            )
        )

    def _remember_run(self, cid: str) -> None:
        self.announced_runs[cid] = None
        while len(self.announced_runs) > 10_000:
            self.announced_runs.popitem(last=False)

    def _link(self, cid: str | None) -> str | None:
        if not cid or not self.run_link:
            return None
        try:
            return self.run_link.format(correlation_id=cid)
        except (KeyError, IndexError, ValueError):
            return None

    def _new_pattern(self, pattern, source, lineno, event, cid, cluster) -> None:
        if self.learning:
            return
        text = pattern.text
        if cluster is not None:
            found = self.analyzer.miner.drain.id_to_cluster.get(cluster)
            text = shown(found.get_template()) if found is not None else text
        self.out.append(
            Announcement(
                "new pattern",
                f"pattern|{pattern.key}",
                f"{pattern.kind}: {text}",
                where=f"{ev.machine(event)}; {Path(source).name}:{lineno}",
                before=self._before(source),
                correlation_id=cid,
                link=self._link(cid),
                details={
                    "line": (
                        ev.attrs(event).get("code.filepath")
                        and f"{ev.attrs(event)['code.filepath']}:{ev.attrs(event).get('code.lineno')}"
                    )
                },
            )
        )

    # -------------------------------------------------------------------------------- runs

    def _track(self, cid: str, event: dict, a: dict, source: str, short: str) -> None:
        name = event.get("event_name") or ev.STEP
        run = self.runs.get(cid)
        failed = ev.is_failure(event)
        if run is None:
            run = self.runs[cid] = _Run(
                a.get("sl2s.flow"), None, ev.machine(event), False, 0.0
            )
        else:
            self.runs.move_to_end(cid)
        run.seen = self.clock()
        run.source = source
        known = self.plan is None or (a.get("sl2s.flow"), a.get("sl2s.step")) in (
            self.analyzer.index
        )
        if (
            name == ev.STEP and known
        ):  # (a step the plan does not know is its own pattern)
            run.flow = a.get("sl2s.flow") or run.flow
            run.step = a.get("sl2s.step") or run.step
            run.machine = ev.machine(event)
        run.failed = run.failed or failed
        run.lines.append(short)
        run.before = list(run.lines)

    def tick(self, now: float | None = None) -> None:
        """Close the runs quiet for `settle` seconds; announce new ways of stopping early."""
        now = self.clock() if now is None else now
        while self.runs:
            cid, run = next(iter(self.runs.items()))
            if now - run.seen < self.settle:
                break
            del self.runs[cid]
            self._closed(cid, run)

    def _closed(self, cid: str, run: _Run) -> None:
        if not run.flow or not run.step:
            return
        last = None
        if self.plan is not None:
            flow = next((f for f in self.plan.flows if f.name == run.flow), None)
            last = flow.steps[-1].id if flow is not None and flow.steps else None
            if last is not None and run.step == last and not run.failed:
                return
        elif not run.failed:
            return
        key = f"stopped early|{run.flow}|{run.step}"
        if key in self.analyzer.seen or key in self.analyzer.patterns:
            return
        self.analyzer.seen.add(key)
        if self.learning:
            return
        self.out.append(
            Announcement(
                "stopped early",
                f"pattern|{key}",
                f"flow {run.flow} stopped after {run.step!r} on {run.machine}"
                + (f", before its last step {last!r}" if last else " (it failed)"),
                where=run.machine,
                before=run.before,
                correlation_id=cid,
                link=self._link(cid),
            )
        )

    def take(self) -> list[Announcement]:
        out, self.out = self.out, []
        return out

    # -------------------------------------------------------------------------------- state

    def save(self) -> None:
        from sl2s.observe.mining import miner_state
        from sl2s.observe.patterns import STATE_VERSION

        seen = dict(self.state.get("seen") or {})
        for key in self.analyzer.seen:
            seen.setdefault(key, {"kind": key.split("|", 1)[0], "text": "", "count": 0})
        for p in self.analyzer.patterns.values():
            entry = seen.setdefault(p.key, {"kind": p.kind, "text": p.text, "count": 0})
            entry["text"] = p.text
            entry["count"] = p.count
        self.state = {
            "version": STATE_VERSION,
            "plan": None,
            "seen": seen,
            "drain": miner_state(self.analyzer.miner),
            "mining": self.analyzer.options.as_dict(),
        }
        save_state(self.state_path, self.state)


# ------------------------------------------------------------------------------------ sources


class LocalFiles:
    """Tails files and directories: new complete lines since the last poll, per file."""

    def __init__(self, paths: Iterable[str], text: bool = False, prefix=None) -> None:
        self.roots = [Path(p) for p in paths]
        missing = [str(p) for p in self.roots if not p.exists()]
        if missing:
            raise Sl2sError(f"{missing[0]}: no such file or directory")
        self.text = text
        self.prefix = prefix
        self.files: dict[Path, list] = (
            {}
        )  # path -> [offset, line number, partial, is_text, inode]
        self._scanned = 0.0
        self.where: dict[Path, _Where] = {}

    def scan(self) -> None:
        for root in self.roots:
            if root.is_file():
                self._add(root)
                continue
            for path in sorted(root.rglob("*")):
                name = path.name
                if name.startswith("incident-") or not path.is_file():
                    continue
                if name.endswith(".jsonl") or (
                    self.text and path.suffix in (".log", ".txt")
                ):
                    self._add(path)
        self._scanned = time.monotonic()

    def skip_to_end(self) -> None:
        """Start every file known now at its end (its complete lines are not read)."""
        for path, info in self.files.items():
            try:
                data_size = path.stat().st_size
                with path.open("rb") as handle:
                    handle.seek(max(data_size - 65536, 0))
                    tail = handle.read()
            except OSError:
                continue
            end = tail.rfind(b"\n")
            offset = (
                data_size - (len(tail) - end - 1) if end >= 0 else data_size - len(tail)
            )
            info[0], info[1] = offset, _count_lines(path, offset)

    def _add(self, path: Path) -> None:
        if path not in self.files:
            is_text = self.text or not path.name.endswith(".jsonl")
            self.files[path] = [0, 0, b"", is_text, None]
            self.where[path] = _Where(path)

    def poll(
        self, limit: int = 8 * 1024 * 1024
    ) -> Iterable[tuple[str, int, dict, _Where]]:
        if time.monotonic() - self._scanned > 1.0:
            self.scan()
        loads = orjson.loads
        for path, info in self.files.items():
            offset, lineno, partial, is_text, inode = info
            try:
                stat = path.stat()
            except OSError:
                continue
            if (inode is not None and stat.st_ino != inode) or stat.st_size < offset:
                offset, lineno, partial = 0, 0, b""  # rotated or truncated
            info[4] = stat.st_ino
            if stat.st_size == offset:
                continue
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read(min(stat.st_size - offset, limit))
            except OSError:
                continue
            offset += len(data)
            data = partial + data
            end = data.rfind(b"\n")
            partial = data[end + 1 :] if end >= 0 else data
            source = str(path)
            where = self.where[path]
            if end >= 0:
                for raw in data[: end + 1].split(b"\n")[:-1]:
                    lineno += 1
                    if not raw.strip():
                        continue
                    if is_text:
                        line = split_line(
                            raw.decode("utf-8", errors="replace"), self.prefix
                        )
                        yield source, lineno, as_event(
                            source, lineno, line, path.name
                        ), where
                        continue
                    try:
                        event = loads(raw)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(event, dict) and "attributes" in event:
                        yield source, lineno, event, where
            info[0], info[1], info[2] = offset, lineno, partial


def _count_lines(path: Path, upto: int) -> int:
    count = 0
    with path.open("rb") as handle:
        while upto > 0:
            chunk = handle.read(min(upto, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            upto -= len(chunk)
    return count


class _Where:
    """Where a local file's events ran, read when asked (a failure: rare)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> dict:
        return where_local(self.path)


def _services_of(path: Path) -> Path | None:
    """The generated tree a log file belongs to (`<services>/.sl2s/logs/…`), if it does."""
    for parent in path.resolve().parents:
        if parent.name == ".sl2s" and (parent.parent / "sl2s.lock.json").is_file():
            return parent.parent
    return None


def where_local(path: Path) -> dict:
    from sl2s.observe.revision import revision_of

    services = _services_of(path)
    return {
        "host": socket.gethostname(),
        "revision": revision_of(services)[0],
        "environment": os.environ.get("SL2S_ENVIRONMENT") or None,
    }


class RemoteMachine(threading.Thread):
    """Long-polls one served machine; puts (source, lineno, event, where) on `inbox`."""

    def __init__(
        self,
        url: str,
        keys: tuple[bytes, ...],
        inbox: queue.Queue,
        warn,
        stop,
        from_end=False,
    ):
        super().__init__(name=f"sl2s-watch {url}", daemon=True)
        self.url, self.keys, self.inbox, self.warn, self.stop_event = (
            url,
            keys,
            inbox,
            warn,
            stop,
        )
        self.cursor: str | None = None
        self.lineno = 0
        self.ready = threading.Event()  # the existing lines were read once
        self.from_end = from_end

    def run(self) -> None:
        from sl2s.observe.follow import poll_remote

        failures = 0
        while not self.stop_event.is_set():
            try:
                answer = poll_remote(
                    self.url,
                    self.cursor,
                    self.keys,
                    wait=0 if not self.ready.is_set() else 10,
                    from_end=self.from_end,
                )
            except (Sl2sError, OSError, ValueError) as error:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    message = (
                        error.diagnostics[0] if isinstance(error, Sl2sError) else error
                    )
                    self.warn(f"watch: {message}")
                if (
                    not self.ready.is_set()
                ):  # nothing to learn from it now: do not hold the start
                    self.inbox.put(("ready", self.url))
                    self.ready.set()
                self.stop_event.wait(min(1.0 * failures, 10.0))
                continue
            failures = 0
            self.cursor = answer.get("cursor") or self.cursor
            where = answer.get("where") or {}
            lines = answer.get("lines") or []
            for raw in lines:
                self.lineno += 1
                try:
                    event = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    self.inbox.put((self.url, self.lineno, event, where))
            if not lines and not self.ready.is_set():
                self.inbox.put(("ready", self.url))
                self.ready.set()


# ------------------------------------------------------------------------------------ sinks


class Sinks:
    """Terminal, webhook and command; the webhook and command run on a sender thread."""

    def __init__(
        self,
        say: Callable[[str], None] | None,
        warn: Callable[[str], None],
        webhook: str | None = None,
        secret: bytes | None = None,
        command: str | None = None,
    ) -> None:
        self.say, self.warn = say, warn
        self.webhook, self.secret, self.command = webhook, secret, command
        self.queue: queue.Queue = queue.Queue()
        self.sent = 0
        self.thread = None
        if webhook or command:
            self.thread = threading.Thread(
                target=self._loop, name="sl2s-watch-send", daemon=True
            )
            self.thread.start()

    def send(self, announcement: Announcement) -> None:
        if self.say is not None:
            self.say(announcement.text())
        if self.thread is not None:
            self.queue.put(announcement)

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            try:
                if self.webhook:
                    self._post(item)
                if self.command:
                    self._run(item)
            finally:
                self.queue.task_done()

    def _post(self, announcement: Announcement) -> None:
        from sl2s.observe.announce import post, webhook_request

        body = announcement.slack_body()
        webhook = self.webhook
        assert webhook is not None  # (a webhook sink was configured)
        for attempt in range(3):
            url, headers = webhook_request(webhook, body, self.secret, time.time())
            try:
                status = post(url, body, headers)
            except OSError as error:
                status, detail = None, str(error)
            else:
                detail = f"HTTP {status}"
            if status is not None and 200 <= status < 300:
                self.sent += 1
                return
            if status is not None and 400 <= status < 500 and status != 429:
                break
            time.sleep(0.5 * 2**attempt)
        self.warn(f"watch: webhook {_origin(webhook)}: not delivered ({detail})")

    def _run(self, announcement: Announcement) -> None:
        import shlex
        import subprocess

        try:
            done = subprocess.run(
                shlex.split(self.command),
                input=orjson.dumps(announcement.as_dict()),
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired, ValueError) as error:
            self.warn(f"watch: command {self.command!r}: {error}")
            return
        if done.returncode != 0:
            self.warn(f"watch: command {self.command!r} exited {done.returncode}")

    def close(self, timeout: float = 10.0) -> None:
        if self.thread is None:
            return
        self.queue.put(None)
        self.thread.join(timeout)


def _origin(url: str) -> str:
    """`scheme://host:port/…` of a URL: a webhook's path often is its secret (Slack's is)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


# ------------------------------------------------------------------------------------ the loop


@dataclass
class WatchConfig:
    paths: list[str]
    urls: list[str] = field(default_factory=list)
    keys: tuple[bytes, ...] = ()
    state: str | None = None
    plan: str | None = None
    text: bool = False
    prefix: str | None = None
    webhook: str | None = None
    secret: bytes | None = None
    command: str | None = None
    quiet: bool = False
    rate: float = 30.0
    burst: int = 10
    settle: float = 2.0
    interval: float = 0.05
    announce_existing: bool = False
    from_end: bool = False  # skip what the logs hold already (nothing learnt from it)
    run_link: str | None = None
    options: object = None
    duration: float | None = None  # stop after this many seconds (tests, benches)


def state_dir(config: WatchConfig) -> Path:
    if config.state:
        return Path(config.state)
    for raw in config.paths:
        path = Path(raw)
        return path if path.is_dir() else path.parent
    return Path(".sl2s") / "watch"


def run_watch(
    config: WatchConfig,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> int:
    """Follow until Ctrl-C / SIGTERM (or `config.duration`); 0 after a clean stop."""
    import signal

    from sl2s.observe.textlog import compile_prefix
    from sl2s.plan import read_plan

    if not config.paths and not config.urls:
        raise Sl2sError("nothing to watch: name log files or directories, or --url")
    plan = read_plan(config.plan) if config.plan else None
    local = (
        LocalFiles(config.paths, config.text, compile_prefix(config.prefix))
        if config.paths
        else None
    )
    directory = state_dir(config)
    store = ErrorStore(directory)
    watch = Watch(
        store,
        directory / "watch-patterns.json",
        plan=plan,
        options=config.options,
        settle=config.settle,
        run_link=config.run_link,
    )
    gate = Gate(config.rate, config.burst)
    sinks = Sinks(
        None if config.quiet else say,
        warn,
        config.webhook,
        config.secret,
        config.command,
    )
    stop = threading.Event()
    inbox: queue.Queue = queue.Queue(maxsize=100_000)
    remotes = [
        RemoteMachine(u, config.keys, inbox, warn, stop, config.from_end)
        for u in config.urls
    ]
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    try:
        # what is there already: learnt silently
        watch.learning = not config.announce_existing
        if local is not None:
            local.scan()
            if config.from_end:
                local.skip_to_end()
            while True:
                got = False
                for item in local.poll():
                    got = True
                    watch.feed(*item)
                if not got:
                    break
        for remote in remotes:
            remote.start()
        pending = {r.url for r in remotes}
        learn_deadline = time.monotonic() + 30.0
        while pending and time.monotonic() < learn_deadline and not stop.is_set():
            try:
                item = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if item[0] == "ready":
                pending.discard(item[1])
            else:
                watch.feed(*item)
        watch.tick(float("inf"))
        watch.take()
        watch.learning = False
        names = [*(str(p) for p in (local.roots if local else ())), *config.urls]
        warn(f"watching {', '.join(names)} (Ctrl-C to stop)")
        saved = time.monotonic()
        while not stop.is_set():
            fed = 0
            if local is not None:
                for item in local.poll():
                    watch.feed(*item)
                    fed += 1
            while True:
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
                if item[0] != "ready":
                    watch.feed(*item)
                    fed += 1
            watch.tick()
            for announcement in watch.take():
                if gate.admit(announcement):
                    sinks.send(announcement)
            now = time.monotonic()
            if now - saved > SAVE_EVERY:
                watch.save()
                saved = now
            if config.duration is not None and now - started > config.duration:
                break
            if not fed:
                stop.wait(config.interval)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        try:
            watch.tick()
            for announcement in watch.take():
                if gate.admit(announcement):
                    sinks.send(announcement)
            watch.save()
        finally:
            sinks.close()
            store.close()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
    warn(f"watch stopped after {watch.events} event(s)")
    return 0
