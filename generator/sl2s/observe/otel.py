"""OpenTelemetry: one span per machine segment, the step events as span events.

A runtime hooks listener (`segment_started`, `segment_finished`, `event`). Optional: it needs
`opentelemetry-api` (the `otel` extra installs the SDK); `install_if_configured` subscribes it only
when the process has configured an SDK TracerProvider, so an unconfigured process pays nothing.

Ids: a segment's span gets the runtime's own trace id and span id (the ones its events and its
`traceparent` carry), and the caller's span id as parent. So the spans of one run nest across
machines and processes exactly as the events say, and a span is found from any event line by
`trace_id`/`span_id`. (With the SDK this is done by handing the tracer the runtime's ids through
its id generator; a tracer without one gets fresh ids and only the parent link.)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sl2s import __version__
from sl2s.diagnostics import Sl2sError
from sl2s.observe import events as ev


def _get(info: Any, *names: str, default=None):
    for name in names:
        if isinstance(info, dict):
            if info.get(name) is not None:
                return info[name]
        else:
            value = getattr(info, name, None)
            if value is not None:
                return value
    return default


def _scalar_attributes(event: Mapping) -> dict:
    out = {}
    for key, value in ev.attrs(event).items():
        if isinstance(value, (str, bool, int, float)):
            out[key] = value
        elif isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (str, bool, int, float)):
                    out[f"{key}.{sub}"] = v
    out["severity_text"] = str(event.get("severity_text") or "")
    out["body"] = str(event.get("body") or "")
    return out


def exception_attributes(error: BaseException) -> dict:
    """The span's `exception` event for a segment that failed, from masked text only.

    Not `span.record_exception(error)`: it formats the exception's whole chain, and a runtime
    failure's `__cause__` is the user's original exception, whose message and traceback hold the
    secret values that sl2s masked everywhere else. An sl2s failure brings its own masked message
    and traceback (`StepFailed.traceback`); any other exception is named by its type only.
    """
    name = type(error).__name__
    if isinstance(error, Sl2sError):
        message = str(getattr(error, "message", None) or error)
        stack = getattr(error, "traceback", None) or f"{name}: {message}"
    else:
        message = "(not shown: only text masked by sl2s is exported)"
        stack = name
    return {
        "exception.type": name,
        "exception.message": message,
        "exception.stacktrace": stack,
        "exception.escaped": "False",
    }


class _RuntimeIds:
    """An id generator that hands out the runtime's ids when told to, else defers."""

    def __init__(self, fallback) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def __getattr__(self, name):  # is_trace_id_random and whatever later SDKs ask
        return getattr(self.fallback, name)

    def is_trace_id_random(self) -> bool:
        return False  # the runtime's ids are random, but not ours to vouch for

    def generate_span_id(self) -> int:
        value = getattr(self.local, "span_id", None)
        if value:
            self.local.span_id = None
            return value
        return self.fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        value = getattr(self.local, "trace_id", None)
        if value:
            self.local.trace_id = None
            return value
        return self.fallback.generate_trace_id()


def _hex(value) -> int | None:
    try:
        return int(str(value), 16) or None
    except (TypeError, ValueError):
        return None


class SpanListener:
    def __init__(self, tracer_provider=None) -> None:
        from opentelemetry import trace

        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("sl2s", __version__)
        self._ids = None
        fallback = getattr(self._tracer, "id_generator", None)
        if fallback is not None:
            self._ids = _RuntimeIds(fallback)
            tracer: Any = self._tracer  # an SDK Tracer: its id generator is replaceable
            tracer.id_generator = self._ids
        self._spans: dict[object, list] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(span_id, correlation_id, machine) -> object:
        return span_id if span_id else (correlation_id, machine)

    def _parent_context(self, info):
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        trace_id = _hex(_get(info, "trace_id"))
        parent = _hex(_get(info, "parent_span_id", "parent_id"))
        if not trace_id or not parent:
            return None
        context = SpanContext(
            trace_id=trace_id,
            span_id=parent,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(NonRecordingSpan(context))

    def segment_started(self, info) -> None:
        flow = _get(info, "flow", default="?")
        machine = _get(info, "machine", default="?")
        cid = _get(info, "correlation_id")
        attributes = {"sl2s.flow": str(flow), "sl2s.machine": str(machine)}
        if cid:
            attributes["sl2s.correlation_id"] = str(cid)
        at = _get(info, "at", "step")
        if at:
            attributes["sl2s.at"] = str(at)
        span_id = _get(info, "span_id")
        if self._ids is not None:
            self._ids.local.span_id = _hex(span_id)
            self._ids.local.trace_id = _hex(_get(info, "trace_id"))
        try:
            span = self._tracer.start_span(
                f"{flow} @ {machine}",
                context=self._parent_context(info),
                attributes=attributes,
            )
        finally:
            if self._ids is not None:
                self._ids.local.span_id = self._ids.local.trace_id = None
        with self._lock:
            self._spans.setdefault(self._key(span_id, cid, machine), []).append(span)

    def segment_finished(self, info, error=None) -> None:
        from opentelemetry.trace import Status, StatusCode

        key = self._key(
            _get(info, "span_id"),
            _get(info, "correlation_id"),
            _get(info, "machine", default="?"),
        )
        with self._lock:
            stack = self._spans.get(key)
            span = stack.pop() if stack else None
            if stack is not None and not stack:
                del self._spans[key]
        if span is None:
            return
        if error is not None:
            attributes = exception_attributes(error)
            span.add_event("exception", attributes=attributes)
            span.set_status(
                Status(
                    StatusCode.ERROR,
                    f"{attributes['exception.type']}: {attributes['exception.message']}",
                )
            )
        span.end()

    def event(self, event: Mapping) -> None:
        key = self._key(
            event.get("span_id"), ev.correlation_id(event), ev.machine(event)
        )
        with self._lock:
            stack = self._spans.get(key)
            span = stack[-1] if stack else None
        if span is None:
            return
        name = event.get("event_name") or "event"
        if name == ev.STEP:
            name = ev.attrs(event).get("sl2s.step") or name
        when = ev.parse_time(event.get("timestamp"))
        span.add_event(
            str(name),
            attributes=_scalar_attributes(event),
            timestamp=int(when.timestamp() * 1e9) if when else None,
        )


def install_if_configured(subscribe) -> SpanListener | None:
    """Subscribe a SpanListener when an OpenTelemetry SDK TracerProvider is configured."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        return None
    listener = SpanListener()
    subscribe(listener)
    return listener
