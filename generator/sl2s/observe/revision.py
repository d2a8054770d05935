"""Which revision of the code runs, and links to its source lines.

The revision, in order (the first that answers wins; `revision_of` says which):

1. `$SL2S_REVISION` (any text: a commit, a tag, a build number);
2. the git work tree containing the services (read from `.git`, no git program needed);
3. `<services>/sl2s.revision`, written by `sl2s deploy` and `sl2s deploys record` — so a copy
   without `.git` (a container image built from the tree) still knows what it was deployed as.

None of them: the revision is unknown, and every place that shows it says how to set it.

Source links: a URL template with `{revision}`, `{path}` and `{line}` (and `{repo}`), from
`$SL2S_SOURCE_URL`, else `[links] source` in `<services>/sl2s.toml`, e.g.
`https://github.com/acme/shop/blob/{revision}/{path}#L{line}`; `{repo}` is `$SL2S_REPO_URL` or
`[links] repo`. `{path}` is the file relative to the git work tree's root when it is known, else
as the events write it (relative to the services' parent directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from sl2s.observe.provenance import git_revision

REVISION_FILE = "sl2s.revision"
UNKNOWN_HINT = "unknown (set SL2S_REVISION, or record it with `sl2s deploy` / `sl2s deploys record`)"


def _toml(services_dir: Path | None) -> dict:
    if services_dir is None:
        return {}
    path = Path(services_dir) / "sl2s.toml"
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def revision_file(services_dir: str | os.PathLike) -> Path:
    return Path(services_dir) / REVISION_FILE


def read_revision_file(services_dir: str | os.PathLike) -> dict | None:
    try:
        data = orjson.loads(revision_file(services_dir).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("revision") else None


def write_revision_file(
    services_dir: str | os.PathLike, revision: str, recorded_at: str, source: str
) -> Path:
    """Write `<services>/sl2s.revision` atomically (what a container copy reads)."""
    path = revision_file(services_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(
        orjson.dumps(
            {"revision": revision, "recorded_at": recorded_at, "from": source},
            option=orjson.OPT_INDENT_2,
        )
        + b"\n"
    )
    os.replace(tmp, path)
    return path


def revision_of(services_dir: str | os.PathLike | None) -> tuple[str | None, str]:
    """(revision, where it came from: `SL2S_REVISION`, `git`, `sl2s.revision`, or `unknown`)."""
    configured = (os.environ.get("SL2S_REVISION") or "").strip()
    if configured:
        return configured, "SL2S_REVISION"
    where = Path(services_dir) if services_dir is not None else Path.cwd()
    try:
        found = git_revision(where)
    except (OSError, ValueError):
        found = None
    if found:
        return found, "git"
    if services_dir is not None:
        recorded = read_revision_file(services_dir)
        if recorded:
            return str(recorded["revision"]), REVISION_FILE
    return None, "unknown"


def git_root(start: str | os.PathLike) -> Path | None:
    directory = Path(start).resolve()
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def source_template(services_dir: str | os.PathLike | None) -> tuple[str | None, str]:
    """(URL template, repo) from the environment, else `[links]` of `sl2s.toml`."""
    links = _toml(Path(services_dir) if services_dir else None).get("links")
    links = links if isinstance(links, dict) else {}
    template = os.environ.get("SL2S_SOURCE_URL") or links.get("source")
    repo = os.environ.get("SL2S_REPO_URL") or links.get("repo") or ""
    return (str(template) if template else None), str(repo)


def path_prefix(services_dir: str | os.PathLike | None) -> str:
    """What to put before an event's file path (relative to the services' parent) so that it is
    relative to the git work tree's root ("" when that is the parent, or unknown)."""
    if services_dir is None:
        return ""
    parent = Path(services_dir).resolve().parent
    root = git_root(parent)
    if root is None:
        return ""
    rel = os.path.relpath(parent, root).replace(os.sep, "/")
    return "" if rel == "." else rel + "/"


def source_url(
    template: str | None,
    *,
    revision: str | None,
    location: str | None,
    repo: str = "",
    prefix: str = "",
) -> str | None:
    """The link for `location` (`path:line`) at `revision`, or None without template/revision."""
    if not template or not revision or not location:
        return None
    path, _, line = location.rpartition(":")
    if not path:
        path, line = location, ""
    try:
        return template.format(
            revision=revision, path=prefix + path, line=line, repo=repo.rstrip("/")
        )
    except (KeyError, IndexError, ValueError):
        return None
