"""`Machine`: one machine of a generated system, created once by `<system>/<machine>/_wiring.py`.
`start` begins a flow run here (the entry), `segment` registers what an inbound hop runs, `handle`
runs it (transports call this). The activations themselves are `Run`s (`sl2s.runtime.core.run`).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable

from sl2s.runtime.core import durable, events, logcapture, metadata, registry, system
from sl2s.runtime.core.hop import HopRequest, HopResponse
from sl2s.runtime.core.prepare import Prepared, prepare
from sl2s.runtime.core.registry import UNSET
from sl2s.runtime.core.run import Run
from sl2s.runtime.core.run.activation import RETURNED, depth
from sl2s.runtime.core.run.events import type_name
from sl2s.runtime.errors import RuntimeFailure, WiringError
from sl2s.template import parse


def _env_secrets() -> set[str]:
    raw = os.environ.get("SL2S_SECRETS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


class Machine:
    """One machine of a generated system. Created once by `<system>/<machine>/_wiring.py`."""

    def __init__(self, wiring_module_name: str, machine: str) -> None:
        self.name = machine
        self.package = wiring_module_name.rpartition(".")[0]  # "services.server"
        self.system = self.package.rpartition(".")[0]  # "services"
        self.resource = {"service.name": machine}
        self._segments: dict[tuple[str, str], Callable] = {}
        self._prepared: dict[str, dict[str, Prepared]] = {}
        self._prepared_version = -1
        self._secrets: dict[str, tuple[int, frozenset[str]]] = {}
        self._info: system.SystemInfo | None = None
        _register(self)
        logcapture.install()

    def __repr__(self) -> str:
        return f"Machine({self.system!r}, {self.name!r})"

    # -- what wiring calls ----------------------------------------------------------------------

    def start(self, flow: str, /, **fields: object) -> Run:
        """Begin a flow run on this machine (its entry). `UNSET` fields are left out of the context.
        (`flow` is positional-only, so a field may be called `flow` or `self`.)"""
        context = {k: v for k, v in fields.items() if v is not UNSET}
        meta = metadata.current()
        # started by the code of a step of another flow run: linked to it (same trace, its
        # metadata unless this block set some)
        # (the stack is walked only inside an activation: no step runs here otherwise)
        calling = logcapture.current_step(sys._getframe(1)) if depth() else None
        if calling is None:
            trace_id, parent_span, parent = events.new_trace_id(), None, None
        else:
            outer, outer_step = calling
            trace_id, parent_span = outer.trace_id, outer.span_id
            parent = (outer.correlation_id, outer_step.id)
            if meta is None:
                meta = outer.meta
            if meta:  # as the parent shows it: masked with the parent's secrets
                meta = {k: outer._scrub(v) for k, v in meta.items()}
        # under `sl2s flows resume`: continue that recorded flow run
        resume = durable.take_resume()
        run = Run(
            self,
            flow,
            context,
            trace_id=trace_id,
            parent_span_id=parent_span,
            correlation_id=(
                events.new_correlation_id() if resume is None else resume.correlation_id
            ),
            causation_id=None,
            secret_names=set(self.secret_names(flow)),
            stack=[],
            at=None,
            meta=meta,
            parent=parent,
        )
        for name in context:
            run.set_by[name] = None
        run._begin("entry")
        if run._buf is not None:
            if resume is None:  # a new flow: recorded with its first commit, no replay
                durable.record_flow(run._buf, run, 0)
            else:
                run._attempt = resume.attempt
                run._replay = durable.history(run._store, run.correlation_id)
        return run

    def segment(self, flow: str, *, at: str) -> Callable[[Callable], Callable]:
        """Register the decorated `fn(run) -> run` as this machine's segment of `flow` starting at
        step `at` (what an inbound hop runs)."""

        def register(fn: Callable) -> Callable:
            self._segments[(flow, at)] = fn
            return fn

        return register

    def has_segment(self, flow: str, at: str) -> bool:
        """Whether an inbound hop into `flow` at step `at` has a segment here: a hop server asks
        before running anything, and answers 404 instead of opening an incident."""
        return (flow, at) in self._segments

    def handle(self, request: HopRequest) -> HopResponse:
        """Run the segment for an inbound hop. Never raises for failures inside the flow: they come
        back as `HopResponse.error` (already written as an ERROR event here or deeper).
        """
        trace_id, parent_span = _parse_traceparent(request.traceparent)
        run = Run(
            self,
            request.flow,
            request.fields,
            trace_id=trace_id,
            parent_span_id=parent_span,
            correlation_id=request.correlation_id,
            causation_id=request.causation_id,
            secret_names=set(self.secret_names(request.flow)) | set(request.secrets),
            stack=list(request.stack),
            at=request.at,
            meta=request.meta,
            parent=(
                None
                if request.parent is None
                else (request.parent["correlation_id"], request.parent["step"])
            ),
        )
        for name in request.fields:
            run.set_by[name] = "@" + request.source
        run._begin("segment")
        error: BaseException | None = None
        try:
            if run._buf is not None:
                run._attempt = durable.attempt_of(
                    request.idempotency_key, request.correlation_id
                )
                durable.refuse_cancelled(run._store, request.correlation_id)
                if durable.replay_segment(request.correlation_id, run._attempt):
                    # a resumed flow, or a hop taken over from a process that died: replay
                    run._replay = durable.history(run._store, run.correlation_id)
            segment = self._segments.get((request.flow, request.at))
            if segment is None:
                raise WiringError(
                    f"machine '{self.name}' has no segment of flow '{request.flow}' starting at "
                    f"step '{request.at}' (the callers' wiring is newer or older than this "
                    "machine's: regenerate with `sl2s generate`)",
                    self.info.plan_location(request.flow, request.at),
                )
            result = segment(run)
            if result is not run or run._state is not RETURNED:
                raise WiringError(
                    f"segment {getattr(segment, '__qualname__', segment)} of machine "
                    f"'{self.name}' ended without `return run.return_to(...)`"
                )
            resume_at, fields = run._return
            run._check_json(fields, request.source, resume_at or "(flow end)")
            response = HopResponse(
                resume_at, fields, sorted(run.secret_names), run.causation_id
            )
        except RuntimeFailure as failure:
            error = failure
            run._report(failure)
            response = HopResponse(
                None, {}, sorted(run.secret_names), run.causation_id, failure.to_dict()
            )
        except (
            Exception
        ) as exc:  # noqa: BLE001 - a bug in wiring: report it as data, upwards
            error = exc
            crash = WiringError(
                f"machine '{self.name}' crashed running flow '{request.flow}' at "
                f"'{request.at}': {type_name(exc)}: {run._scrub(str(exc))}"
            )
            run._report(crash)
            response = HopResponse(
                None, {}, sorted(run.secret_names), run.causation_id, crash.to_dict()
            )
        finally:
            run._end(error)
        return response

    # -- lookups (cached) -----------------------------------------------------------------------

    @property
    def info(self) -> system.SystemInfo:
        if self._info is None:
            self._info = system.info(self.system, self.package)
        return self._info

    def secret_names(self, flow: str) -> frozenset[str]:
        """Names of the secret fields of `flow`: `#name` placeholders of its steps (registered on any
        machine of this process, or recorded in the lock file) and `SL2S_SECRETS` (comma-separated).
        """
        cached = self._secrets.get(flow)
        if cached is not None and cached[0] == registry.version:
            return cached[1]
        names = set(self.info.secret_names(flow)) | _env_secrets()
        for template in registry.flow_templates(flow):
            try:
                names.update(
                    p.name
                    for p in parse(template)
                    if not isinstance(p, str) and p.secret
                )
            except ValueError:
                pass
        frozen = frozenset(names)
        self._secrets[flow] = (registry.version, frozen)
        return frozen

    def prepared(self, flow: str) -> dict[str, Prepared]:
        if self._prepared_version != registry.version:
            # a module (re)registered steps: prepare again on next use; the dicts stay the same
            # objects, since runs in progress hold them
            for steps in self._prepared.values():
                steps.clear()
            self._prepared_version = registry.version
        found = self._prepared.get(flow)
        if found is None:
            found = self._prepared[flow] = {}
        return found

    def _prepare(self, flow: str, step_id: str) -> Prepared:
        return prepare(self, flow, step_id)


def _parse_traceparent(value: str) -> tuple[str, str | None]:
    parts = (value or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        return parts[1], parts[2]
    return events.new_trace_id(), None


# -- the machines of this process, by (system package, name) ----------------------------------------

_MACHINES: dict[tuple[str, str], Machine] = {}
_lock = threading.RLock()


def _register(machine: Machine) -> None:
    with _lock:
        _MACHINES[(machine.system, machine.name)] = machine


def load_machine(system: str, name: str) -> Machine:
    """The Machine `name` of the system package `system`, importing `<system>.<name>` if needed."""
    found = _MACHINES.get((system, name))
    if found is not None:
        return found
    module = f"{system}.{name}" if system else name
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (
            module == error.name or module.startswith(error.name + ".")
        ):
            raise WiringError(
                f"machine '{name}' is not part of system '{system}' (no package {module})"
            ) from None
        raise
    found = _MACHINES.get((system, name))
    if found is None:
        raise WiringError(
            f"package {module} was imported but defines no Machine '{name}'"
        )
    return found
