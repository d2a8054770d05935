"""The console's settings: its base URL (for permalinks `sl2s story` prints) and source links.

`sl2s.toml` (the one in the current directory, else the first found at or above a log directory
given), overridden by the environment. Source links share `[links]` with the crash details of
incidents (sl2s.observe.revision), so one setting serves both:

| sl2s.toml | environment | meaning |
|---|---|---|
| `[console] url` | `SL2S_CONSOLE_URL` | where the console is reached, e.g. `http://127.0.0.1:8700` |
| `[console] revision` | `SL2S_CONSOLE_REVISION` | the revision when the run's incident does not name one (`HEAD`) |
| `[links] repo` | `SL2S_REPO_URL` | the repository's web address, e.g. `https://github.com/org/app` |
| `[links] source` | `SL2S_SOURCE_URL` | template of a source link (default GitHub's form below) |

Source link templates: `{repo}`, `{revision}`, `{path}`, `{line}` are replaced.
GitHub: `{repo}/blob/{revision}/{path}#L{line}`; GitLab: `{repo}/-/blob/{revision}/{path}#L{line}`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sl2s.diagnostics import Diagnostic, Sl2sError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GITHUB = "{repo}/blob/{revision}/{path}#L{line}"
GITLAB = "{repo}/-/blob/{revision}/{path}#L{line}"
KEYS = {  # [console] setting -> its environment variable
    "url": "SL2S_CONSOLE_URL",
    "revision": "SL2S_CONSOLE_REVISION",
}
LINKS = {  # [links] setting -> (Settings field, environment variable)
    "repo": ("repo", "SL2S_REPO_URL"),
    "source": ("source_url", "SL2S_SOURCE_URL"),
}


@dataclass(frozen=True)
class Settings:
    url: str = ""
    repo: str = ""
    source_url: str = GITHUB
    revision: str = "HEAD"


def config_files(search: Iterable[str | os.PathLike]) -> list[Path]:
    """`sl2s.toml` of the current directory, then at or above each path (three levels up)."""
    found: dict[Path, None] = {}
    cwd = Path.cwd() / "sl2s.toml"
    if cwd.is_file():
        found[cwd.resolve()] = None
    for raw in search:
        here = Path(raw).resolve()
        for parent in [here, *list(here.parents)[:3]]:
            candidate = parent / "sl2s.toml"
            if candidate.is_file():
                found.setdefault(candidate, None)
                break
    return list(found)


def read_table(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise Sl2sError(Diagnostic(str(path), 0, f"not valid TOML: {error}")) from None
    table = data.get("console", {})
    if not isinstance(table, dict):
        raise Sl2sError(Diagnostic(str(path), 0, "[console] must be a table"))
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise Sl2sError(
            Diagnostic(
                str(path),
                0,
                f"[console] has unknown setting(s): {', '.join(unknown)} "
                f"(expected {', '.join(KEYS)}; source links are [links] repo and source)",
            )
        )
    for key, value in table.items():
        if not isinstance(value, str):
            raise Sl2sError(
                Diagnostic(str(path), 0, f"[console] {key} must be a string")
            )
    values = dict(table)
    links = data.get(
        "links", {}
    )  # (shared with sl2s.observe.revision, which checks it)
    if isinstance(links, dict):
        for key, (field, _) in LINKS.items():
            if isinstance(links.get(key), str):
                values[field] = links[key]
    return values


def load(
    search: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for path in config_files(search):
        table = read_table(path)
        if table:
            values = table
            break
    for key, env in [*KEYS.items(), *LINKS.values()]:  # the environment wins
        if environ.get(env, "").strip():
            values[key] = environ[env].strip()
    settings = Settings(**{k: v for k, v in values.items() if v})
    for key in ("url", "repo"):
        value = getattr(settings, key)
        if value and not value.startswith(("http://", "https://")):
            raise Sl2sError(f"console {key} {value!r}: not an http:// or https:// URL")
    return settings


def source_link(
    settings: Settings, path: str, line: int | str, revision: str | None = None
) -> str:
    """The web address of `path:line` at `revision`, or '' when no repository is configured."""
    if not settings.repo or not path:
        return ""
    text = settings.source_url
    for key, value in (
        ("{repo}", settings.repo.rstrip("/")),
        ("{revision}", quote(revision or settings.revision, safe="")),
        ("{path}", quote(str(path).lstrip("/"), safe="/")),
        ("{line}", str(line or 1)),
    ):
        text = text.replace(key, value)
    return text


def event_link(base: str, event_id: str) -> str:
    return f"{base.rstrip('/')}/event/{quote(event_id, safe='')}" if base else ""


def run_link(base: str, cid: str) -> str:
    return f"{base.rstrip('/')}/run/{quote(cid, safe='')}" if base else ""
