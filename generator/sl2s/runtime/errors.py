"""What a flow run raises. Every runtime failure is an `Sl2sError` (the CLI prints it as
`FILE:LINE: message`, no traceback) and carries plain data, so it can travel back over a hop as a
dict (`to_dict` / `failure_from_dict`) and be raised again, unchanged in meaning, by every caller up
the stack.

- `StepFailed`: a step's function raised (`kind="exception"`), or broke the step contract
  (`kind="contract"`: returned something other than None or a mapping, set a field that is not JSON
  data). Carries the machine, flow, step, plan location (`plan.csv:4`), the id of the ERROR event the
  failing machine wrote, the original exception's type and message (secrets as `***`), the step
  function's `file:line`, and, for `kind="exception"`, the formatted traceback of the user's code.
- `WiringError`: generated code and user code or the runtime disagree (no `@step` function for a step,
  no segment for a hop, control returned somewhere the wiring does not expect). Regenerating fixes it.
- `HopFailed`: a transport could not deliver a hop or its answer (raised by transports). When the
  flow's deadline passed, `remote_state` says what became of the segment the hop asked for:
  "completed", "pending", "not started" or "unknown" (see `REMOTE_STATES`).
"""

from __future__ import annotations

from sl2s.diagnostics import Diagnostic, Sl2sError


def _split_location(location: str | None) -> tuple[str, int]:
    if not location:
        return "", 0
    path, _, line = location.rpartition(":")
    if path and line.isdigit():
        return path, int(line)
    return location, 0


class RuntimeFailure(Sl2sError):
    """Base of everything a flow run raises on purpose."""

    kind = "sl2s"
    message: str
    # set once its ERROR event is written, so that no caller up the stack writes it again
    reported = False

    def to_dict(self) -> dict:
        return {"class": type(self).__name__, "message": self.message, **self._data()}

    def _data(self) -> dict:
        return {}


class WiringError(RuntimeFailure):
    """Generated wiring and the code or runtime it drives disagree."""

    def __init__(self, message: str, location: str | None = None) -> None:
        self.message = message
        self.location = location
        path, line = _split_location(location)
        super().__init__(Diagnostic(path or "sl2s", line, message))

    def _data(self) -> dict:
        return {"location": self.location}


REMOTE_STATES = ("completed", "pending", "not started", "unknown")


class HopFailed(RuntimeFailure):
    """A hop could not be delivered (connection refused, timeout, bad answer)."""

    # set by the HTTP transport: the plan line of the hop's step, and the hop's key
    location: str | None = None
    idempotency_key: str | None = None

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        target: str = "",
        flow: str = "",
        at: str = "",
        remote_state: str | None = None,
    ) -> None:
        self.message = message
        self.source, self.target, self.flow, self.at = source, target, flow, at
        # one of REMOTE_STATES when the flow's deadline passed, else None
        self.remote_state = remote_state
        where = (
            f"hop {source} -> {target} (flow '{flow}', at '{at}')" if target else "hop"
        )
        super().__init__(Diagnostic("sl2s", 0, f"{where}: {message}"))

    def _data(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "flow": self.flow,
            "at": self.at,
            "remote_state": self.remote_state,
        }


class StepFailed(RuntimeFailure):
    """A step failed on some machine; raised by every caller up the stack, unchanged."""

    def __init__(
        self,
        *,
        machine: str,
        flow: str,
        step: str,
        plan: str | None,
        event_id: str | None,
        exc_type: str,
        exc_message: str,
        source: str | None = None,
        traceback: str | None = None,
        kind: str = "exception",
    ) -> None:
        self.machine, self.flow, self.step = machine, flow, step
        self.plan, self.event_id = plan, event_id
        self.exc_type, self.exc_message = exc_type, exc_message
        self.source, self.traceback, self.kind = source, traceback, kind
        self.message = (
            f"step '{step}' of flow '{flow}' failed on machine '{machine}': "
            f"{exc_type}: {exc_message}"
        )
        if source and plan:
            self.message += f" (step function at {source})"
        path, line = _split_location(plan or source)
        super().__init__(Diagnostic(path or "sl2s", line, self.message))

    def _data(self) -> dict:
        return {
            "machine": self.machine,
            "flow": self.flow,
            "step": self.step,
            "plan": self.plan,
            "event_id": self.event_id,
            "exc_type": self.exc_type,
            "exc_message": self.exc_message,
            "source": self.source,
            "traceback": self.traceback,
            "kind": self.kind,
        }


def failure_from_dict(data: dict) -> RuntimeFailure:
    """Rebuild a failure that came back over a hop (see `RuntimeFailure.to_dict`)."""
    cls = data.get("class")
    if cls == "StepFailed":
        return StepFailed(
            machine=data.get("machine", "?"),
            flow=data.get("flow", "?"),
            step=data.get("step", "?"),
            plan=data.get("plan"),
            event_id=data.get("event_id"),
            exc_type=data.get("exc_type", "Exception"),
            exc_message=data.get("exc_message", ""),
            source=data.get("source"),
            traceback=data.get("traceback"),
            kind=data.get("kind", "exception"),
        )
    if cls == "HopFailed":
        return HopFailed(
            data.get("message", ""),
            source=data.get("source", ""),
            target=data.get("target", ""),
            flow=data.get("flow", ""),
            at=data.get("at", ""),
            remote_state=data.get("remote_state"),
        )
    return WiringError(data.get("message", "remote failure"), data.get("location"))
