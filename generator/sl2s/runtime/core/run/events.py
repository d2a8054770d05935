"""The events an activation writes besides its steps' (log records, failures, withheld secrets),
and the serialised pieces of a step's event line that do not change within an activation.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from sl2s.runtime import hooks
from sl2s.runtime.core import events
from sl2s.runtime.core.run.activation import RunActivation
from sl2s.runtime.errors import HopFailed, RuntimeFailure

if TYPE_CHECKING:
    from sl2s.runtime.core.prepare import Prepared

LOG_SEVERITY = ((50, 21), (40, 17), (30, 13), (20, 9), (0, 5))
dumps = events.dumps
NL = events.APPEND_NEWLINE
# placeholders cut out of a step's serialised event: timestamp, body, event id, cause, fields, unset
MARKS = tuple(
    f"\x00sl2s-{name}\x00" for name in ("ts", "body", "id", "cause", "fields", "unset")
)
# (mark, the value goes inside its quotes, text after the value that is part of the next static
# piece): timestamp (the second's text and microseconds), body, event id, cause, fields, unset
CUTS = (
    (MARKS[0], True, b"Z"),
    (MARKS[1], False, b""),
    (MARKS[2], True, b""),
    (MARKS[3], False, b""),
    (MARKS[4], False, b""),
    (MARKS[5], False, b""),
)


# the correlation, trace and span ids in a step's line serialised once per step (replaced per
# activation; where each of them lands is fixed by the key order: trace and span between body and
# event id, the correlation id between event id and cause)
ID_MARKS = tuple(f"\x00sl2s-{name}\x00" for name in ("correlation", "trace", "span"))
ID_MARKS_JSON = tuple(dumps(mark) for mark in ID_MARKS)


def _line_parts(
    p: Prepared,
    run: RunActivation,
    correlation_id: object,
    trace_id: object,
    span_id: object,
    run_attributes: dict,
) -> tuple:
    """A step's event line, serialised with marks and cut where the changing values go."""
    attributes = {
        "sl2s.event_id": MARKS[2],
        "sl2s.correlation_id": correlation_id,
        "sl2s.causation_id": MARKS[3],
        "sl2s.flow": run.flow,
        "sl2s.step": p.id,
        "sl2s.machine": run.machine.name,
        "sl2s.template": p.template,
        "sl2s.plan": p.plan,
        "sl2s.fields": MARKS[4],
        "sl2s.unset": MARKS[5],
        **run_attributes,
        "code.filepath": p.filepath,
        "code.lineno": p.lineno,
        "code.function": p.function,
    }
    if p.plan is None:
        del attributes["sl2s.plan"]
    event = {
        "timestamp": MARKS[0],
        "severity_text": "INFO",
        "severity_number": 9,
        "body": MARKS[1],
        "trace_id": trace_id,
        "span_id": span_id,
        "event_name": "sl2s.step",
        "resource": run.machine.resource,
        "attributes": attributes,
    }
    rest = dumps(event, option=NL)
    parts = []
    for text, inside, after in CUTS:
        mark = dumps(text)
        if inside:  # the value goes inside the quotes (it needs no escaping)
            mark = mark[1:-1]
        before, found, rest = rest.partition(mark)
        assert found, text
        parts.append(before)
        rest = after + rest
    parts.append(rest)
    return tuple(parts)


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return (
        cls.__qualname__
        if module in ("builtins", "__main__")
        else f"{module}.{cls.__qualname__}"
    )


def _mask_record(record, scrub: Callable[[str], str], message_changed: bool) -> None:
    """Mask a log record in place for the handlers that format it after sl2s has seen it: its
    message (then without %-args), its exception text (`exc_text`, which `logging.Formatter` uses
    instead of formatting `exc_info` again) and its `stack_info`."""
    if message_changed:
        record.msg, record.args = scrub(record.getMessage()), ()
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        masked = scrub(text)
        if masked is not text:
            record.exc_text = masked
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


def unserialisable(fields: dict) -> list[str]:
    bad = []
    for name, value in fields.items():
        try:
            dumps(value)
        except TypeError:
            bad.append(name)
    return bad


class RunEvents(RunActivation):
    """Writing a run's events (one JSON line each, masked)."""

    __slots__ = ()

    def _static_parts(self, p: Prepared) -> tuple:
        """This step's event line in this activation, serialised with marks where the changing
        values go and cut there: seven byte strings, between which a step puts the second's
        date/time text and the microseconds, then the JSON of body, event id (inside its quotes),
        cause, fields and unset (key order is the documented one).

        The line is the same for every activation of the step but for its correlation, trace and
        span ids: without run attributes it is serialised once per step (`Prepared.line`, with
        marks for the three ids) and each activation puts its ids in with three replaces.
        """
        if self.meta or self.parent is not None:
            return _line_parts(
                p,
                self,
                self.correlation_id,
                self.trace_id,
                self.span_id,
                self._run_attributes(),
            )
        parts = p.line
        if parts is None:
            parts = p.line = _line_parts(
                p, self, ID_MARKS[0], ID_MARKS[1], ID_MARKS[2], {}
            )
        s0, s1, s2, s3, s4, s5, s6 = parts
        trace, span = dumps(self.trace_id), dumps(self.span_id)
        return (
            s0,
            s1,
            s2.replace(ID_MARKS_JSON[1], trace).replace(ID_MARKS_JSON[2], span),
            s3.replace(ID_MARKS_JSON[0], dumps(self.correlation_id)),
            s4,
            s5,
            s6,
        )

    def _run_attributes(self) -> dict:
        """Who started the flow run and why (masked), and the run whose step started it."""
        attributes: dict = {}
        if self.meta:
            attributes["sl2s.run_meta"] = {
                k: self._scrub(v) for k, v in self.meta.items()
            }
        if self.parent is not None:
            attributes["sl2s.parent_correlation_id"] = self.parent[0]
            attributes["sl2s.parent_step"] = self.parent[1]
        return attributes

    def _emit(
        self,
        event_name: str,
        severity: str,
        body: str,
        extra: dict,
        *,
        step: Prepared | None = None,
        plan: str | None = None,
        fields: bool = True,
        severity_number: int | None = None,
    ) -> str:
        """Write any event of this run (log lines, failures); returns its id."""
        event_id = events.new_event_id()
        attributes: dict[str, object] = {
            "sl2s.event_id": event_id,
            "sl2s.correlation_id": self.correlation_id,
            "sl2s.causation_id": self.causation_id,
            "sl2s.flow": self.flow,
            "sl2s.machine": self.machine.name,
        }
        if step is not None:
            attributes["sl2s.step"] = step.id
            attributes["sl2s.template"] = step.template
            plan = plan or step.plan
        if plan:
            attributes["sl2s.plan"] = plan
        if self.meta is not None or self.parent is not None:
            attributes.update(self._run_attributes())
        if fields:
            masked = self._masked_fields()
            for name in unserialisable(masked) if masked else ():
                masked[name] = f"<not JSON: {type(masked[name]).__name__}>"
            attributes["sl2s.fields"] = masked
            if step is not None:
                attributes["sl2s.unset"] = [
                    n for n in step.placeholders if n not in self.fields
                ]
        attributes.update(extra)
        number = severity_number or events.SEVERITY.get(severity, 9)
        event = {
            "timestamp": events.now(),
            "severity_text": severity,
            "severity_number": number,
            "body": body,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "event_name": event_name,
            "resource": self.machine.resource,
            "attributes": attributes,
        }
        try:
            line = dumps(event, option=NL)
        except TypeError:
            line = dumps(event, option=NL, default=repr)
        self._sink.write(line)
        self.causation_id = event_id
        if hooks.event_fns:
            # the written line, decoded lazily: listeners that keep events (the flight recorder)
            # must not see later in-place changes of the context's lists and dicts
            hooks.emit_event(
                hooks.LazyEvent(
                    line,
                    number,
                    severity,
                    event_name,
                    "exception.type" in attributes,
                )
            )
        return event_id

    def _emit_log(self, p: Prepared, record) -> None:
        """A stdlib log record made inside a step: its `sl2s.log` event, masked. When the record's
        text holds a secret, the record itself is masked too (message, exception text, stack), so
        that the process's own handlers (stderr, files) never write the value either."""
        scrub = self._scrub
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad %-args: keep the template
            message = str(record.msg)
        template = record.msg if isinstance(record.msg, str) else repr(record.msg)
        severity = next(n for level, n in LOG_SEVERITY if record.levelno >= level)
        extra = {
            "sl2s.log.template": scrub(template),
            "sl2s.log.logger": record.name,
            "code.filepath": self.machine.info.relative(record.pathname),
            "code.lineno": record.lineno,
            "code.function": record.funcName,
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            extra["exception.type"] = scrub(type_name(exc))
            extra["exception.message"] = scrub(str(exc))
        shown = scrub(message)
        self._emit(
            "sl2s.log",
            record.levelname,
            shown,
            extra,
            step=p,
            fields=False,
            severity_number=severity,
        )
        if self._masker is not None:
            _mask_record(record, scrub, shown is not message)

    def _body(self, p: Prepared) -> str:
        return p.render(self._masked_fields())[0]

    def _report(self, failure: RuntimeFailure) -> None:
        if getattr(failure, "reported", False):
            return
        failure.reported = True
        name = (
            "sl2s.hop_failed" if isinstance(failure, HopFailed) else "sl2s.wiring_error"
        )
        self._emit(
            name,
            "ERROR",
            self._scrub(failure.message),
            {
                "exception.type": f"sl2s.{type(failure).__name__}",
                "exception.message": self._scrub(failure.message),
            },
            plan=getattr(failure, "location", None),
        )
