"""Knowing what happened: incidents (flight recorder), stories and new patterns from events.

`install()` is the one call a process makes to record incidents: it subscribes a FlightRecorder
to `sl2s.runtime.hooks` (and, when OpenTelemetry's SDK is configured, the span listener). The
readers (`story`, `patterns`, `incidents`) work on event JSON lines and need no running process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sl2s.observe.recorder import FlightRecorder, warning_or_above

__all__ = ["FlightRecorder", "install", "warning_or_above", "git_revision", "plan_digest"]

_installed: dict[str, FlightRecorder] = {}
_install_lock = threading.Lock()


def git_revision(start: str | os.PathLike) -> str | None:
    """The commit checked out in the git work tree containing `start`, read from .git (no git)."""
    directory = Path(start).resolve()
    for candidate in (directory, *directory.parents):
        dot_git = candidate / ".git"
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            dot_git = (candidate / text[len("gitdir:"):].strip()).resolve()
        if not dot_git.is_dir():
            continue
        try:
            head = (dot_git / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not head.startswith("ref:"):
            return head or None
        ref = head[4:].strip()
        common = dot_git
        commondir = dot_git / "commondir"
        if commondir.is_file():
            common = (dot_git / commondir.read_text(encoding="utf-8").strip()).resolve()
        for base in (dot_git, common):
            ref_file = base / ref
            if ref_file.is_file():
                return ref_file.read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
        return None
    return None


def plan_digest(services_dir: str | os.PathLike) -> str | None:
    """The plan digest recorded in `<services>/sl2s.lock.json`, when there is one."""
    import orjson

    lock = Path(services_dir) / "sl2s.lock.json"
    try:
        data = orjson.loads(lock.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    plan = data.get("plan") if isinstance(data, dict) else None
    return plan.get("digest") if isinstance(plan, dict) else None


def install(
    log_dir: str | os.PathLike | None = None,
    *,
    services_dir: str | os.PathLike | None = None,
    subscribe=None,
    otel: bool = True,
    **options,
) -> FlightRecorder | None:
    """Record incidents of this process into `log_dir` (default `$SL2S_LOG_DIR`, else
    `<services_dir>/.sl2s/logs`, else `./.sl2s/logs`). Idempotent per log dir.

    `SL2S_INCIDENTS=0` disables it (returns None). `subscribe` defaults to
    `sl2s.runtime.hooks.subscribe`. Other options go to FlightRecorder (capacity, qualifier,
    trailing_seconds, trailing_events, compress, durable_timeout).
    """
    if os.environ.get("SL2S_INCIDENTS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if log_dir is None:
        log_dir = os.environ.get("SL2S_LOG_DIR") or (
            Path(services_dir) / ".sl2s" / "logs" if services_dir else Path(".sl2s") / "logs"
        )
    key = str(Path(log_dir).resolve())
    with _install_lock:
        if key in _installed:
            return _installed[key]
        if subscribe is None:
            from sl2s.runtime.hooks import subscribe  # noqa: PLC0415 - the runtime is optional here
        context = dict(options.pop("context", {}) or {})
        where = services_dir or os.getcwd()
        context.setdefault("plan.digest", plan_digest(services_dir) if services_dir else None)
        context.setdefault("git.revision", _safe(git_revision, where))
        recorder = FlightRecorder(log_dir, context=context, **options)
        subscribe(recorder)
        recorder.register_atexit()
        if otel:
            from sl2s.observe.otel import install_if_configured

            install_if_configured(subscribe)
        _installed[key] = recorder
        return recorder


def _safe(function, *args):
    try:
        return function(*args)
    except (OSError, ValueError):
        return None
