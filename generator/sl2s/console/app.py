"""The console's web application: a thin Starlette shell over the index, the queries and the
templates. Pages are server-rendered; the script and style ship in the package (`static/`), and
every answer forbids loading anything from elsewhere (Content-Security-Policy `'self'`).

- `GET /` runs (`q`: `key=value` field filters and words, `flow`, `machine`, `outcome`, `since`,
  `until`, `page`)
- `GET /run/<correlation id>`, `GET /event/<event id>` (the run with that event highlighted)
- `GET /stream?field=key=value[&flow=…]` every step of every run where `key=value`
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape

from sl2s.console import queries
from sl2s.console import settings as cs
from sl2s.console.diagram import sequence_svg
from sl2s.console.index import Index, lock_files
from sl2s.diagnostics import Sl2sError

if TYPE_CHECKING:
    from sl2s.console.remote import Remotes

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "sl2s_console_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _ms(value, sign: str = "") -> str:
    if value is None:
        return ""
    if value >= 1000:
        return f"{sign}{value / 1000:.2f} s"
    return f"{sign}{value:.1f} ms"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sl2s.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["ms"] = _ms
    env.globals["json"] = lambda v: orjson.dumps(v).decode()
    env.globals["field_query"] = field_query
    return env


def field_query(key: str, value) -> str:
    """The search that finds the runs where `key` had `value` ('' when it is not searchable:
    masked, nested or too long)."""
    import shlex

    from sl2s.console.index import flat_fields

    found = list(flat_fields({key: value}))
    if len(found) != 1 or found[0][0] != key:
        return ""
    text = found[0][1]
    return f"{key}={shlex.quote(text) if text != shlex.quote(text) else text}"


@dataclass
class Console:
    """The state a console serves from: the index, the logs it refreshes from, its settings."""

    index: Index
    paths: list[Path]
    settings: cs.Settings = field(default_factory=cs.Settings)
    remote: Remotes | None = None  # when --url was given
    lock: threading.Lock = field(default_factory=threading.Lock)
    plans: dict[str, str] = field(default_factory=dict)
    terminal: dict[str, str] | None = None  # flow -> last step, as of the last refresh
    build_seconds: float = 0.0  # how long the first refresh took

    def refresh(self, progress: Callable[[int, int], None] | None = None):
        with self.lock:
            paths = list(self.paths)
            with_events: list[Path] = []
            if self.remote is not None:
                with_events = self.remote.pull()
            stats = self.index.refresh(paths, progress=progress)
            if with_events:
                remote_stats = self.index.refresh(
                    with_events, index_incident_events=True
                )
                stats.events += remote_stats.events
            self.plans = queries.plan_terminals(
                lock_files(p for p in paths if p.is_dir())
            )
            self.terminal = queries.terminal_steps(self.index.conn, self.plans)
            return stats

    def _terminal(self) -> dict[str, str]:
        if self.terminal is None:
            self.terminal = queries.terminal_steps(self.index.conn, self.plans)
        return self.terminal

    # -- pages (pure given the index; each returns HTML)

    def runs_page(self, env: Environment, params, prefix: str) -> tuple[int, str]:
        search = params.get("q", "")
        fields, text = queries.parse_search(search)
        try:
            page = int(params.get("page", "1") or 1)
        except ValueError:
            page = 1
        filt = queries.RunFilter(
            flow=params.get("flow", ""),
            machine=params.get("machine", ""),
            outcome=params.get("outcome", ""),
            since=params.get("since", ""),
            until=params.get("until", ""),
            fields=fields,
            text=text,
            page=page,
        )
        error = ""
        if filt.outcome and filt.outcome not in queries.OUTCOMES:
            error = f"unknown outcome {filt.outcome!r}"
            filt = queries.RunFilter(**{**filt.__dict__, "outcome": ""})
        with self.lock:
            result = queries.list_runs(self.index.conn, filt, terminal=self._terminal())
            flows, machines = queries.choices(self.index.conn)

        def page_url(n: int) -> str:
            kept = {k: v for k, v in params.items() if v and k != "page"}
            return f"{prefix}/?" + urlencode({**kept, "page": n})

        html = env.get_template("runs.html").render(
            prefix=prefix,
            search=search,
            filt=filt,
            page=result,
            flows=flows,
            machines=machines,
            outcomes=queries.OUTCOMES,
            page_url=page_url,
            error=error,
        )
        return (400 if error else 200), html

    def run_page(
        self, env: Environment, cid: str, prefix: str, highlight: str | None = None
    ) -> tuple[int, str]:
        with self.lock:
            view = queries.get_run(
                self.index.conn, cid, highlight=highlight, terminal=self._terminal()
            )
        if view is None:
            return self.error_page(env, 404, f"no run {cid} in the index", prefix)
        revision = next(
            (i.get("git_revision") for i in view.incidents if i.get("git_revision")),
            None,
        )
        longest = max(
            (it["delta_ms"] or 0 for it in view.items if it["kind"] == "event"),
            default=0,
        )
        for it in view.items:
            if it["kind"] == "event":
                it["source_url"] = cs.source_link(
                    self.settings, it["path"], it["line"], revision
                )
                plan, _, line = it["plan"].rpartition(":")
                it["plan_url"] = (
                    cs.source_link(self.settings, plan, line, revision)
                    if plan and line.isdigit() and not plan.startswith("..")
                    else ""
                )

        def bar(delta):
            if not delta or not longest:
                return 0
            return max(1, round(100 * delta / longest))

        html = env.get_template("run.html").render(
            prefix=prefix,
            base=self.settings.url.rstrip("/") or prefix,
            run=view.run,
            items=view.items,
            stopped=view.stopped,
            children=view.children,
            incidents=view.incidents,
            svg=sequence_svg(view.run["flow"] or "?", view.run["machines"], view.items),
            bar=bar,
        )
        return 200, html

    def event_page(
        self, env: Environment, event_id: str, prefix: str
    ) -> tuple[int, str]:
        with self.lock:
            cid = queries.run_of_event(self.index.conn, event_id)
        if cid is None:
            return self.error_page(
                env, 404, f"no event {event_id} in the index", prefix
            )
        return self.run_page(env, cid, prefix, highlight=event_id)

    def stream_page(self, env: Environment, params, prefix: str) -> tuple[int, str]:
        spec = params.get("field", "")
        key, sep, value = spec.partition("=")
        if not sep or not key:
            return self.error_page(
                env, 400, "name one field value: /stream?field=key=value", prefix
            )
        flows = tuple(f for f in params.getlist("flow") if f)
        try:
            page = int(params.get("page", "1") or 1)
        except ValueError:
            page = 1
        with self.lock:
            items, more = queries.stream(self.index.conn, key, value, flows, page)

        def page_url(n: int) -> str:
            pairs = [("field", spec)] + [("flow", f) for f in flows] + [("page", n)]
            return f"{prefix}/stream?" + urlencode(pairs)

        html = env.get_template("stream.html").render(
            prefix=prefix,
            key=key,
            value=value,
            flows=flows,
            items=items,
            more=more,
            page=page,
            page_url=page_url,
        )
        return 200, html

    def error_page(self, env: Environment, status: int, message: str, prefix: str):
        return status, env.get_template("error.html").render(
            prefix=prefix, status=status, message=message
        )


def build_app(console: Console, token: str | None = None, refresh_every: float = 2.0):
    """The Starlette app. With `token`, every request must carry it (`Authorization: Bearer`,
    the cookie set by visiting any page with `?token=…` once)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    env = environment()
    stop = threading.Event()

    def refresher():
        while not stop.wait(refresh_every):
            try:
                console.refresh()
            except (
                Exception
            ) as error:  # a refresh that fails is retried; the pages stay up
                print(f"sl2s console: refreshing the index failed: {error}", flush=True)

    @asynccontextmanager
    async def lifespan(app):
        thread = None
        if refresh_every > 0:
            thread = threading.Thread(
                target=refresher, name="sl2s-console-refresh", daemon=True
            )
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=10)

    def prefix_of(request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def page(result):
        status, html = result
        return HTMLResponse(html, status_code=status)

    def runs(request):
        return page(console.runs_page(env, request.query_params, prefix_of(request)))

    def run(request):
        return page(
            console.run_page(env, request.path_params["cid"], prefix_of(request))
        )

    def event(request):
        return page(
            console.event_page(env, request.path_params["eid"], prefix_of(request))
        )

    def stream(request):
        return page(console.stream_page(env, request.query_params, prefix_of(request)))

    app = Starlette(
        routes=[
            Route("/", runs),
            Route("/run/{cid}", run),
            Route("/event/{eid}", event),
            Route("/stream", stream),
            Mount(
                "/static", StaticFiles(directory=str(HERE / "static")), name="static"
            ),
        ],
        lifespan=lifespan,
    )

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if token:
            from starlette.requests import Request

            request = Request(scope)
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(
                given.encode(), token.encode()
            ):
                # set the cookie and drop the token from the address bar (and from history)
                rest = [
                    (k, v)
                    for k, v in request.query_params.multi_items()
                    if k != "token"
                ]
                target = request.url.path + ("?" + urlencode(rest) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(
                    TOKEN_COOKIE, token, httponly=True, samesite="strict"
                )
                await response(scope, receive, send)
                return
            bearer = request.headers.get("authorization", "")
            presented = request.cookies.get(TOKEN_COOKIE) or (
                bearer[7:] if bearer.lower().startswith("bearer ") else ""
            )
            if not hmac.compare_digest(presented.encode(), token.encode()):
                await Response(
                    "this console needs its token: open it with ?token=… once\n",
                    status_code=401,
                    media_type="text/plain",
                )(scope, receive, send)
                return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    guarded.console = console  # type: ignore[attr-defined]  # for tests and the CLI
    return guarded


def default_index_path() -> Path:
    return Path(".sl2s") / "console.sqlite3"


def open_console(
    logs: list[str],
    urls: Sequence[str] = (),
    index_path: str | None = None,
    keys: tuple[bytes, ...] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Console:
    """The console over `logs` (and machines at `urls`), its index brought up to date.
    `progress(done, total)`: bytes of the local event files indexed."""
    from sl2s.console.remote import Remotes
    from sl2s.observe import events as ev

    ev.event_files(
        logs
    )  # a path that does not exist is a user error, before anything is written
    path = Path(index_path) if index_path else default_index_path()
    console = Console(
        index=Index(path),
        paths=[Path(p) for p in logs],
        settings=cs.load(logs),
        remote=(
            Remotes(list(urls), path.parent / "console-remote", keys) if urls else None
        ),
    )
    started = time.perf_counter()
    console.refresh(progress)
    console.build_seconds = time.perf_counter() - started
    return console


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_bind(host: str, token: str | None) -> None:
    """Loopback by default; any other address only with a token."""
    if host not in LOOPBACK and not host.startswith("127.") and not token:
        raise Sl2sError(
            f"--host {host}: beyond loopback the console requires a token "
            "(--token or SL2S_CONSOLE_TOKEN): anyone who reaches it reads every run"
        )


def serve(
    logs: list[str],
    urls: list[str],
    host: str,
    port: int,
    token: str | None,
    index_path: str | None,
    keys: tuple[bytes, ...],
    refresh_every: float,
    echo,
    building=None,
) -> None:
    """Index, print the address, serve until Ctrl-C (the shell of `sl2s console`). `building`:
    a context manager factory wrapped around the index build (the CLI's progress display); what
    it yields, if not None, is told the build's progress as `(done, total)`."""
    import contextlib
    import socket

    import uvicorn

    check_bind(host, token)
    with (building or contextlib.nullcontext)() as update:
        console = open_console(logs, urls, index_path, keys, progress=update)
    stats = console.index.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    app = build_app(console, token, refresh_every)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # the address printed below answers from now on
    except OSError as error:
        sock.close()
        raise Sl2sError(
            f"cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    for remote_url, problem in getattr(console.remote, "errors", {}).items():
        echo(f"{remote_url}: {problem}")
    echo(
        f"sl2s console: {stats} runs indexed in {console.build_seconds:.1f} s "
        f"({console.index.path}); open {url}"
        + ("  (with ?token=… once)" if token else "")
    )
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down and passes the signal on
        pass
    finally:
        sock.close()
        console.index.close()
