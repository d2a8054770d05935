"""Where each machine is served and how hops behave: `sl2s.toml`, `.sl2s/up.toml`, environment.

Precedence, lowest first (a later source overrides an earlier one per machine / per setting):

1. `<services>/sl2s.toml`          committed by the user
2. `<services>/.sl2s/up.toml`      written by `sl2s up` while it runs, removed when it stops
3. environment: `SL2S_URL_<MACHINE>` (machine name upper-cased; several replicas' URLs separated
   by commas), `SL2S_HOP_TIMEOUT`,
   `SL2S_HOP_ATTEMPTS`, `SL2S_MAX_BODY`, `SL2S_DEADLINE` (every flow's deadline: it overrides
   the `[flows.<name>]` settings too)

```toml
[machines]
server = "http://127.0.0.1:8001"
emailservice = "http://10.0.0.7:8000"
search = ["http://127.0.0.1:8002", "http://127.0.0.1:8003"]   # replicas: a hop picks one, and
                                                              # retries on the next (docs/deploy.md)

[machines.payments]   # a machine's table: its URL, and settings read by `sl2s deploy`
url = "http://10.0.0.8:8000"      # or a list of URLs, one per replica the caller can reach
replicas = 2          # pods/containers of it; more than 1 needs the PostgreSQL store

[hop]
timeout = 10        # seconds one attempt of a hop may take (connect, send, answer)
attempts = 4        # at most this many tries per hop (1 = no retry); default: until the deadline
max_body = 1048576  # bytes a server accepts in one hop request

[flows.login]
deadline = 120      # seconds a run of flow `login` may wait on other machines (default 60)

[store]             # read by sl2s.runtime.store, not here (docs/durability.md)
url = "sqlite:state/flows.sqlite3"
```

The hop key comes from `SL2S_HOP_KEY` (or, for `sl2s up`'s fresh key, `<services>/.sl2s/hop.key`),
never from a committed file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.runtime.transport.http.deadlines import DEFAULT_DEADLINE
from sl2s.runtime.transport.http.protocol import DEFAULT_MAX_BODY, parse_keys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_FILE = "sl2s.toml"
UP_FILE = ".sl2s/up.toml"
KEY_FILE = ".sl2s/hop.key"
ENV_KEY = "SL2S_HOP_KEY"
ENV_URL_PREFIX = "SL2S_URL_"

ENV_DEADLINE = "SL2S_DEADLINE"

# One attempt of a hop: long enough for a slow step's answer, well below the flow's deadline, so
# that a hung machine is noticed and the hop retried (a step still running answers 409 in_progress).
DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS: int | None = None  # None: retry until the flow's deadline


class HopConfigError(Sl2sError):
    """Configuration that cannot work: a user-facing error."""


@dataclass(frozen=True)
class HttpConfig:
    urls: Mapping[str, str] = field(
        default_factory=dict
    )  # machine -> base URL, no trailing / (its first replica's when it has several)
    # machine -> every replica's base URL, for machines given more than one address
    replicas: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(
        default_factory=dict
    )  # machine -> where its URL came from
    keys: tuple[bytes, ...] = ()  # signing key first, then keys still accepted
    key_source: str = ""
    timeout: float = DEFAULT_TIMEOUT
    attempts: int | None = DEFAULT_ATTEMPTS  # None: until the deadline
    max_body: int = DEFAULT_MAX_BODY
    deadline: float = DEFAULT_DEADLINE  # seconds, for flows without their own
    deadlines: Mapping[str, float] = field(default_factory=dict)  # flow -> seconds

    def url(self, machine: str) -> str | None:
        return self.urls.get(machine)

    def addresses(self, machine: str) -> str | tuple[str, ...] | None:
        """Where hops to `machine` go: its one URL, or the tuple of its replicas' URLs (what
        `HopClient.post` takes as `base_url`); None when it has no address."""
        return self.replicas.get(machine) or self.urls.get(machine)

    def deadline_for(self, flow: str) -> float:
        """Seconds a run of `flow` may wait on other machines, from its first hop."""
        return self.deadlines.get(flow, self.deadline)

    def describe(self, machine: str) -> str:
        url = self.urls.get(machine)
        if url is None:
            return f"machine '{machine}' has no address"
        url = ", ".join(self.replicas.get(machine, ())) or url
        return f"machine '{machine}' at {url} (from {self.sources.get(machine, '?')})"


def env_name(machine: str) -> str:
    return ENV_URL_PREFIX + machine.upper()


def check_url(url: object, where: str) -> str:
    if not isinstance(url, str):
        raise HopConfigError(
            f"{where}: expected a URL string like http://127.0.0.1:8001"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HopConfigError(
            f"{where}: {url!r} is not an http:// or https:// URL with a host"
        )
    if parts.query or parts.fragment:
        raise HopConfigError(f"{where}: {url!r} must not have a query or fragment")
    try:
        _ = parts.port  # parsed on access: a port out of range raises
    except ValueError:
        raise HopConfigError(f"{where}: {url!r} has an invalid port") from None
    return url.rstrip("/")


def check_urls(value: object, where: str) -> tuple[str, ...]:
    """A machine's addresses: one URL, or a non-empty list of distinct URLs (its replicas)."""
    if not isinstance(value, list):
        return (check_url(value, where),)
    if not value:
        raise HopConfigError(f"{where}: an empty list: give at least one URL")
    urls = tuple(check_url(url, where) for url in value)
    twice = sorted({url for url in urls if urls.count(url) > 1})
    if twice:
        raise HopConfigError(f"{where}: {twice[0]!r} is listed twice")
    return urls


def split_env_urls(value: str, where: str) -> tuple[str, ...]:
    """`SL2S_URL_<MACHINE>`: one URL or several separated by commas (spaces around them allowed)."""
    parts = [part.strip() for part in value.split(",")]
    if "" in parts:
        raise HopConfigError(
            f"{where}: {value!r} has an empty URL (separate replicas' URLs with single commas)"
        )
    return check_urls(parts if len(parts) > 1 else parts[0], where)


def _set_addresses(
    machine: str,
    found: tuple[str, ...],
    source: str,
    urls: dict,
    replicas: dict,
    sources: dict,
) -> None:
    urls[machine] = found[0]
    if len(found) > 1:
        replicas[machine] = found
    else:
        replicas.pop(machine, None)
    sources[machine] = source


def _read_toml(path: Path, label: str) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise HopConfigError(Diagnostic(label, 0, f"not valid TOML: {error}")) from None


def _apply_file(
    data: dict,
    label: str,
    urls: dict,
    sources: dict,
    settings: dict,
    deadlines: dict | None = None,
    replicas: dict | None = None,
) -> None:
    # read elsewhere: [store] by sl2s.runtime.store (the flow store's URL), [console] by
    # sl2s.console (its base URL), [links] by sl2s.observe.revision (source links)
    unknown = sorted(
        set(data) - {"machines", "hop", "flows", "store", "console", "links"}
    )
    if unknown:
        raise HopConfigError(
            Diagnostic(label, 0, f"unknown table(s): {', '.join(unknown)}")
        )
    machines = data.get("machines", {})
    if not isinstance(machines, dict):
        raise HopConfigError(
            Diagnostic(label, 0, "[machines] must be a table of name = URL")
        )
    for name, url in machines.items():
        if isinstance(url, dict):  # [machines.<name>]: its URL and its deploy settings
            # (replicas is read by sl2s.serve.machines for `sl2s deploy`)
            unknown = sorted(set(url) - {"url", "replicas"})
            if unknown:
                raise HopConfigError(
                    Diagnostic(
                        label,
                        0,
                        f"[machines.{name}] has unknown setting(s): {', '.join(unknown)}"
                        " (expected url, replicas)",
                    )
                )
            if "url" not in url:
                continue
            url = url["url"]
        found = check_urls(url, f"{label}: [machines] {name}")
        _set_addresses(
            name, found, label, urls, {} if replicas is None else replicas, sources
        )
    hop = data.get("hop", {})
    if not isinstance(hop, dict):
        raise HopConfigError(Diagnostic(label, 0, "[hop] must be a table"))
    for name, value in hop.items():
        if name not in ("timeout", "attempts", "max_body"):
            raise HopConfigError(
                Diagnostic(label, 0, f"[hop] has unknown setting {name!r}")
            )
        settings[name] = (value, f"{label}: [hop] {name}")
    _apply_flows(data.get("flows", {}), label, {} if deadlines is None else deadlines)


def _apply_flows(flows: object, label: str, deadlines: dict) -> None:
    """`[flows.<name>] deadline = seconds`: per-flow settings."""
    if not isinstance(flows, dict):
        raise HopConfigError(
            Diagnostic(label, 0, "[flows] must be a table of flow tables")
        )
    for flow, table in flows.items():
        if not isinstance(table, dict):
            raise HopConfigError(
                Diagnostic(
                    label, 0, f"[flows] {flow} must be a table, like [flows.{flow}]"
                )
            )
        for name, value in table.items():
            if name != "deadline":
                raise HopConfigError(
                    Diagnostic(label, 0, f"[flows.{flow}] has unknown setting {name!r}")
                )
            deadlines[flow] = _number(
                value, f"{label}: [flows.{flow}] deadline", float, 0.001
            )


def _number(value: object, where: str, kind: type, minimum: float) -> float | int:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise HopConfigError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or number < minimum:
        raise HopConfigError(f"{where}: {value!r} must be at least {minimum}")
    return number


def load_config(
    services_dir: str | Path | None, environ: Mapping[str, str] | None = None
) -> HttpConfig:
    """Read the address map and hop settings for a generated tree (or only the environment)."""
    environ = os.environ if environ is None else environ
    urls: dict[str, str] = {}
    replicas: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    settings: dict[str, tuple[object, str]] = {}
    deadlines: dict[str, float] = {}
    key_text, key_source = None, ""
    if services_dir is not None:
        root = Path(services_dir)
        for relative in (CONFIG_FILE, UP_FILE):
            label = f"{root.name}/{relative}"
            _apply_file(
                _read_toml(root / relative, label),
                label,
                urls,
                sources,
                settings,
                deadlines,
                replicas,
            )
        key_path = root / KEY_FILE
        if key_path.is_file():
            key_text, key_source = (
                key_path.read_text(encoding="utf-8").strip(),
                f"{root.name}/{KEY_FILE}",
            )
    for name, value in environ.items():
        if name.startswith(ENV_URL_PREFIX) and value:
            machine = name[len(ENV_URL_PREFIX) :].lower()
            where = f"environment {name}"
            found = split_env_urls(value, where)
            _set_addresses(machine, found, where, urls, replicas, sources)
    for setting, env in (
        ("timeout", "SL2S_HOP_TIMEOUT"),
        ("attempts", "SL2S_HOP_ATTEMPTS"),
        ("max_body", "SL2S_MAX_BODY"),
        ("deadline", ENV_DEADLINE),
    ):
        if environ.get(env):
            settings[setting] = (environ[env], f"environment {env}")
    if environ.get(ENV_KEY):
        key_text, key_source = environ[ENV_KEY], f"environment {ENV_KEY}"
    try:
        keys = parse_keys(key_text)
    except ValueError as error:
        raise HopConfigError(f"{key_source}: {error}") from None
    values: dict[str, float | int] = {}
    for name, kind, minimum in (
        ("timeout", float, 0.001),
        ("attempts", int, 1),
        ("max_body", int, 1),
        ("deadline", float, 0.001),
    ):
        if name in settings:
            raw, origin = settings[name]
            values[name] = _number(raw, origin, kind, minimum)
    return HttpConfig(
        urls=urls,
        replicas=replicas,
        sources=sources,
        keys=keys,
        key_source=key_source,
        timeout=float(values.get("timeout", DEFAULT_TIMEOUT)),
        attempts=int(values["attempts"]) if "attempts" in values else DEFAULT_ATTEMPTS,
        max_body=int(values.get("max_body", DEFAULT_MAX_BODY)),
        deadline=float(values.get("deadline", DEFAULT_DEADLINE)),
        # SL2S_DEADLINE is for every flow: it overrides the per-flow settings of the files
        deadlines={} if "deadline" in values else deadlines,
    )


def render_machines_toml(urls: Mapping[str, str], header: str = "") -> str:
    """A `[machines]` table as TOML text (used by `sl2s up` for `.sl2s/up.toml`)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append("[machines]")
    for name in sorted(urls):
        lines.append(f'{name} = "{urls[name]}"')
    return "\n".join(lines) + "\n"
