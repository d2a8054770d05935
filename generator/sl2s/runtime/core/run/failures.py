"""How an activation fails: a step that raised or broke the step contract, a context that cannot
travel as JSON, a wiring call out of order. Each failure is written as an ERROR event (once) and
raised as a `RuntimeFailure` that carries it up the stack; an entry run ends with it.
"""

from __future__ import annotations

import os
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

from sl2s.runtime.core import crash, logcapture
from sl2s.runtime.core.registry import UNSET
from sl2s.runtime.core.run.activation import OPEN
from sl2s.runtime.core.run.events import RunEvents, dumps, type_name, unserialisable
from sl2s.runtime.errors import RuntimeFailure, StepFailed, WiringError

if TYPE_CHECKING:
    from sl2s.runtime.core.prepare import Prepared

# frames of the runtime between a step's call and the user's code, cut from user tracebacks
_RUN_DIR = os.path.dirname(os.path.abspath(__file__))


def _runtime_frame(tb: TracebackType) -> bool:
    filename = tb.tb_frame.f_code.co_filename
    return filename == logcapture.CALLER_FILE or os.path.dirname(filename) == _RUN_DIR


class RunFailures(RunEvents):
    """Failing an activation, and the messages that say who set a field."""

    __slots__ = ()

    def _raise(
        self, failure: RuntimeFailure, cause: BaseException | None = None
    ) -> NoReturn:
        """Report `failure` (once), end an entry run, raise."""
        self._report(failure)
        if self.at is None:
            self._end(failure)
        if cause is not None:
            raise failure from cause
        raise failure  # keeps a __cause__ the failure already has

    def _check_open(self, what: str) -> None:
        if self._state is not OPEN:
            failure = WiringError(
                f"run.{what}() on machine '{self.machine.name}' in flow '{self.flow}' after the "
                f"activation ended ({self._state})"
            )
            self._raise(failure)

    def _contract(self, p: Prepared, message: str) -> NoReturn:
        """The step broke the step contract: ERROR event, StepFailed(kind="contract")."""
        failure = self._step_failed(
            p, "sl2s.StepContractError", self._scrub(message), kind="contract"
        )
        self._raise(failure)

    def _step_raised(self, p: Prepared, exc: Exception) -> NoReturn:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None and _runtime_frame(tb):
            tb = tb.tb_next  # only the user's frames
        crashed = crash.safe_details(  # the user's innermost line, locals masked
            tb,
            relative=self.machine.info.relative,
            scrub=self._scrub,
            secret_names=self.secret_names,
        )
        raised_at = (crashed or {}).get("raised_at") or f"{p.filepath}:{p.lineno}"
        # the whole text, chained causes included, is masked (their messages and source lines)
        stack = self._scrub("".join(traceback.format_exception(type(exc), exc, tb)))
        message = self._scrub(str(exc))
        unset = [
            n for n, default in p.params if default is UNSET and n not in self.fields
        ]
        if unset and ("_Unset" in message or "UNSET" in message):
            message += f" ({self._unset_hint(p, unset[0])})"
        failure = self._step_failed(
            p,
            self._scrub(type_name(exc)),
            message,
            kind="exception",
            stack=stack,
            raised_at=raised_at,
            crashed=crashed,
        )
        self._raise(failure, exc)

    def _unset_hint(self, p: Prepared, name: str) -> str:
        """Why the step got `UNSET` for the field `name`, and what fixes it."""
        where = f"field '{name}' was not set when step '{p.id}' ran on machine '{self.machine.name}'"
        if name in self.secret_names:
            return (
                f"{where}: it is a secret, and a secret reaches only the machines whose wiring "
                f"passes it on; run `sl2s generate` so that the wiring routes '{name}' to the "
                "steps that take it"
            )
        return (
            f"{where}: no earlier step or hop set it; pass it to the flow's entry, have an "
            "earlier step return it, or give the parameter a default"
        )

    def _step_failed(
        self,
        p: Prepared,
        exc_type: str,
        message: str,
        *,
        kind: str,
        stack: str | None = None,
        raised_at: str | None = None,
        crashed: dict | None = None,
    ) -> StepFailed:
        """Emit the failed step's ERROR event; the StepFailed that carries it up the stack."""
        attributes: dict[str, object] = {
            "exception.type": exc_type,
            "exception.message": message,
        }
        if crashed:
            attributes["sl2s.crash.frames"] = crashed["frames"]
            attributes["sl2s.crash.arguments"] = crashed["arguments"]
        if stack is not None:
            attributes["exception.stacktrace"] = stack
        if raised_at is not None:
            attributes["sl2s.raised_at"] = raised_at
        attributes.update(
            {
                "code.filepath": p.filepath,
                "code.lineno": p.lineno,
                "code.function": p.function,
            }
        )
        event_id = self._emit("sl2s.step", "ERROR", self._body(p), attributes, step=p)
        failure = StepFailed(
            machine=self.machine.name,
            flow=self.flow,
            step=p.id,
            plan=p.plan,
            event_id=event_id,
            exc_type=exc_type,
            exc_message=message,
            source=f"{p.filepath}:{p.lineno}",
            kind=kind,
            **({"traceback": stack} if stack is not None else {}),
        )
        failure.reported = True
        return failure

    def _not_json(self, p: Prepared, fields: dict) -> NoReturn:
        ctx = self.fields
        bad = unserialisable(fields)
        where = ", ".join(
            f"'{name}' ({type(ctx[name]).__name__}, set by {self._setter(name)})"
            for name in bad
        )
        self._contract(
            p, f"field {where} is not JSON data; the context must survive a hop as JSON"
        )

    def _check_json(self, fields: dict, target: str, at: str) -> None:
        try:
            dumps(fields)
        except TypeError as error:
            bad = unserialisable(fields) or [next(iter(fields), "?")]
            name = bad[0]
            who = self.set_by.get(name)
            step_id = who if who and not who.startswith("@") else None
            p = self._steps.get(step_id) if step_id else self._last_step
            plan = (
                self.machine.info.plan_location(self.flow, step_id) if step_id else None
            )
            failure = StepFailed(
                machine=self.machine.name,
                flow=self.flow,
                step=step_id or (p.id if p else "(entry)"),
                plan=plan or (p.plan if p else None),
                event_id=None,
                exc_type="sl2s.NotJSON",
                exc_message=(
                    f"field '{name}' ({type(fields[name]).__name__}, set by "
                    f"{self._setter(name)}) cannot travel to machine '{target}' (at '{at}'): "
                    f"it is not JSON data ({error})"
                ),
                source=f"{p.filepath}:{p.lineno}" if p else None,
                kind="contract",
            )
            failure.event_id = self._emit(
                "sl2s.hop_failed",
                "ERROR",
                self._scrub(failure.message),
                {
                    "exception.type": "sl2s.NotJSON",
                    "exception.message": self._scrub(failure.exc_message),
                },
                plan=failure.plan,
            )
            failure.reported = True
            self._raise(failure)

    def _setter(self, name: str) -> str:
        who = self.set_by.get(name)
        if who is None:
            return "the flow's caller"
        if who.startswith("@"):
            return f"machine '{who[1:]}'"
        plan = self.machine.info.plan_location(self.flow, who)
        return f"step '{who}'" + (f" at {plan}" if plan else "")

    def _setter_plan(self, name: str) -> str | None:
        who = self.set_by.get(name)
        if not who or who.startswith("@"):
            return None
        return self.machine.info.plan_location(self.flow, who)
