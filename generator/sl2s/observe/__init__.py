"""Knowing what happened: incidents (flight recorder), stories and new patterns from events.

`install()` is the one call a process makes to record incidents: it subscribes a FlightRecorder
to `sl2s.runtime.hooks` (and, when OpenTelemetry's SDK is configured, the span listener). The
readers (`story`, `patterns`, `incidents`) work on event JSON lines and need no running process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sl2s.observe.provenance import git_revision, plan_digest
from sl2s.observe.recorder import (
    RECORDER_OPTIONS,
    FlightRecorder,
    capacities,
    warning_or_above,
)
from sl2s.observe.revision import revision_of

__all__ = [
    "FlightRecorder",
    "install",
    "warning_or_above",
    "git_revision",
    "plan_digest",
]

_installed: dict[str, FlightRecorder] = {}
_install_lock = threading.Lock()


def install(
    log_dir: str | os.PathLike | None = None,
    *,
    services_dir: str | os.PathLike | None = None,
    subscribe=None,
    otel: bool = True,
    **options,
) -> FlightRecorder | None:
    """Record incidents of this process: subscribe one FlightRecorder to `sl2s.runtime.hooks`.

    Without `log_dir` the recorder follows the runtime's rule per incident: `$SL2S_LOG_DIR`, else
    `<system dir>/.sl2s/logs` of the machine that triggered it. Idempotent (one recorder per
    `log_dir`, one for the default), never raises: a failure to set up returns None.
    `SL2S_INCIDENTS=0` disables it. When an OpenTelemetry SDK TracerProvider is configured, the
    span listener is subscribed too. Other options go to FlightRecorder (capacity, qualifier,
    trailing_seconds, trailing_events, compress, durable_timeout).
    """
    if os.environ.get("SL2S_INCIDENTS", "1").strip().lower() in (
        "0",
        "false",
        "no",
        "off",
    ):
        return None
    unknown = set(options) - RECORDER_OPTIONS
    if unknown:  # a mistake in the call: said, not swallowed
        raise TypeError(f"install(): unknown option(s) {', '.join(sorted(unknown))}")
    if "capacity" in options:
        capacities(options["capacity"])  # ValueError for a key that is not a severity
    key = str(Path(log_dir).resolve()) if log_dir is not None else ""
    try:
        with _install_lock:
            if key in _installed:
                recorder = _installed[key]
                if options:  # e.g. after the generated system installed the default one
                    recorder.configure(**options)
                return recorder
            if subscribe is None:
                from sl2s.runtime.hooks import (
                    subscribe,
                )  # noqa: PLC0415 - no cycle at import time
            context = dict(options.pop("context", {}) or {})
            context.setdefault(
                "plan.digest", plan_digest(services_dir) if services_dir else None
            )
            if services_dir:  # else per incident, from the triggering machine's system
                context.setdefault("git.revision", revision_of(services_dir)[0])
            recorder = FlightRecorder(log_dir, context=context, **options)
            subscribe(recorder)
            recorder.register_atexit()
            if otel:
                from sl2s.observe.otel import install_if_configured

                install_if_configured(subscribe)
            _installed[key] = recorder
            return recorder
    except (
        Exception
    ):  # noqa: BLE001 - observing must never stop a service from starting
        return None


def _safe(function, *args):
    try:
        return function(*args)
    except (OSError, ValueError):
        return None
