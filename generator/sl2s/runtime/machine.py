"""`Machine` and `Run`: what generated wiring drives (docs/runtime.md, docs/architecture.md).

A `Run` is one activation of one machine in one flow run: the entry (`Machine.start`) or a segment
run for an inbound hop (`Machine.handle`). It holds the context (a dict of JSON data), runs steps,
writes one event per step, hops with `call`, and ends with `return_to` (segment) or `finish` (entry).
"""

from __future__ import annotations

import inspect
import os
import threading
import traceback
from collections.abc import Callable, Mapping

from sl2s.runtime import durable, events, hooks, logcapture, redact, registry, system
from sl2s.runtime.errors import (
    HopFailed,
    RuntimeFailure,
    StepFailed,
    WiringError,
    failure_from_dict,
)
from sl2s.runtime.registry import UNSET
from sl2s.runtime.transport import HopRequest, HopResponse, select_transport
from sl2s.template import parse, show_value

MASK = redact.MASK
_MISSING = object()
_NOTHING_SET = ("{}", True)  # checkpoint of a step that returned None
_OPEN, _RETURNED, _FINISHED, _FAILED = "open", "returned", "finished", "failed"
_LOG_SEVERITY = ((50, 21), (40, 17), (30, 13), (20, 9), (0, 5))

_dumps = events.dumps
# placeholders cut out of a step's serialised event: timestamp, body, event id, cause, fields, unset
_MARKS = tuple(
    f"\x00sl2s-{name}\x00" for name in ("ts", "body", "id", "cause", "fields", "unset")
)
_FLUSH_LINES = events.FLUSH_LINES
_NL = events.APPEND_NEWLINE
_new_event_id = events.new_event_id
_now = events.now
_time_ns = events._time_ns
_clock = events.clock
_tick = events.tick
_ids = events.ids  # [event id counter] (replaced in place after a fork)
# (mark, the value goes inside its quotes, text after the value that is part of the next static
# piece): timestamp (the second's text and microseconds), body, event id, cause, fields, unset
_CUTS = (
    (_MARKS[0], True, b"Z"),
    (_MARKS[1], False, b""),
    (_MARKS[2], True, b""),
    (_MARKS[3], False, b""),
    (_MARKS[4], False, b""),
    (_MARKS[5], False, b""),
)
_event_fns = hooks.event_fns
_StepEvent = hooks.StepEvent
_LazyEvent = hooks.LazyEvent
_new = object.__new__
_local = threading.local()


def _type_name(exc: BaseException) -> str:
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


def _env_secrets() -> set[str]:
    raw = os.environ.get("SL2S_SECRETS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


class _Prepared:
    """A registered step, ready to run fast on one machine."""

    __slots__ = (
        "id",
        "func",
        "template",
        "parts",
        "placeholders",
        "params",
        "var_kw",
        "plan",
        "filepath",
        "lineno",
        "function",
        "call",
        "render",
        "keys_ok",
    )


class Machine:
    """One machine of a generated system. Created once by `<system>/<machine>/_wiring.py`."""

    def __init__(self, wiring_module_name: str, machine: str) -> None:
        self.name = machine
        self.package = wiring_module_name.rpartition(".")[0]  # "services.server"
        self.system = self.package.rpartition(".")[0]  # "services"
        self.resource = {"service.name": machine}
        self._segments: dict[tuple[str, str], Callable] = {}
        self._prepared: dict[str, dict[str, _Prepared]] = {}
        self._prepared_version = -1
        self._secrets: dict[str, tuple[int, frozenset[str]]] = {}
        self._info: system.SystemInfo | None = None
        registry.register_machine(self)
        logcapture.install()

    def __repr__(self) -> str:
        return f"Machine({self.system!r}, {self.name!r})"

    # -- what wiring calls ----------------------------------------------------------------------

    def start(self, flow: str, /, **fields: object) -> Run:
        """Begin a flow run on this machine (its entry). `UNSET` fields are left out of the context.
        (`flow` is positional-only, so a field may be called `flow` or `self`.)"""
        context = {k: v for k, v in fields.items() if v is not UNSET}
        trace_id = events.new_trace_id()
        resume = durable.take_resume()  # `sl2s flows resume`: continue a recorded flow run
        run = Run(
            self,
            flow,
            context,
            trace_id=trace_id,
            parent_span_id=None,
            correlation_id=(
                events.new_trace_id() if resume is None else resume.correlation_id
            ),
            causation_id=None,
            secret_names=set(self.secret_names(flow)),
            stack=[],
            at=None,
        )
        for name in context:
            run.set_by[name] = None
        run._begin("entry")
        if run._buf is not None:
            if resume is None:  # a new flow: recorded with its first commit, nothing to replay
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
            if result is not run or run._state is not _RETURNED:
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
            failure = WiringError(
                f"machine '{self.name}' crashed running flow '{request.flow}' at "
                f"'{request.at}': {_type_name(exc)}: {run._scrub(str(exc))}"
            )
            run._report(failure)
            response = HopResponse(
                None, {}, sorted(run.secret_names), run.causation_id, failure.to_dict()
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

    def prepared(self, flow: str) -> dict[str, _Prepared]:
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

    def _prepare(self, flow: str, step_id: str) -> _Prepared:
        spec = registry.steps_of(self.package).get((flow, step_id))
        info = self.info
        plan = info.plan_location(flow, step_id)
        if spec is None:
            message = f"no @step function for step '{step_id}' of flow '{flow}' on machine '{self.name}'"
            elsewhere = [
                package
                for package in registry.packages_with(flow, step_id)
                if package.rpartition(".")[0] == self.system
            ]
            if elsewhere:
                message += f"; it is defined in {', '.join(elsewhere)} (move it with `sl2s rebalance`)"
            else:
                message += f" (expected in {self.package.replace('.', '/')}/{flow}.py)"
            raise WiringError(message, plan)
        func = spec.func
        p = _Prepared()
        p.id, p.func, p.template, p.plan = step_id, func, spec.template, plan
        parts: list = []
        for part in parse(spec.template):
            parts.append(part if isinstance(part, str) else (part.name, part.secret))
        p.parts = tuple(parts)
        p.placeholders = tuple(
            dict.fromkeys(x[0] for x in parts if not isinstance(x, str))
        )
        params, var_kw, keyword_only = [], False, set()
        where = _code_location(func, info)
        for param in inspect.signature(func).parameters.values():
            if param.kind is param.VAR_KEYWORD:
                var_kw = True
            elif param.kind is param.VAR_POSITIONAL:
                continue
            elif param.kind is param.POSITIONAL_ONLY:
                raise WiringError(
                    f"step function {func.__qualname__} takes positional-only parameter "
                    f"'{param.name}'; step parameters are context fields passed by name",
                    where[0] and f"{where[0]}:{where[1]}",
                )
            else:
                default = UNSET if param.default is param.empty else param.default
                params.append((param.name, default))
                if param.kind is param.KEYWORD_ONLY:
                    keyword_only.add(param.name)
        p.params, p.var_kw = tuple(params), var_kw
        p.call = _make_caller(func, p.params, var_kw, frozenset(keyword_only))
        p.render = _make_renderer(p.parts)
        p.keys_ok = set()  # keys this step returned before (known to be identifiers)
        p.filepath, p.lineno, p.function = where[0], where[1], func.__qualname__
        self.prepared(flow)[step_id] = p
        return p


def _show(value: object) -> str:
    return str(value) if type(value) is int else show_value(value)


def _make_caller(
    func: Callable, params: tuple, var_kw: bool, keyword_only: frozenset = frozenset()
) -> Callable[[dict], object]:
    """`call(ctx)`: `func` with its parameters taken from the context by name (generated code: no
    per-step loop or comprehension on the hot path). Compiled with the file name
    `logcapture.CALLER_FILE`, which is how a `logging` call finds the step it runs in.
    """
    namespace: dict = {"_f": func, "_params": params}
    if var_kw:
        source = (
            "def call(ctx):\n"
            "    kwargs = dict(ctx)\n"
            "    for name, default in _params:\n"
            "        if name not in kwargs:\n"
            "            kwargs[name] = default\n"
            "    return _f(**kwargs)\n"
        )
    else:
        args = []
        for i, (name, default) in enumerate(params):
            namespace[f"_d{i}"] = default
            # positional where the signature allows it (a little faster than by keyword)
            by_name = f"{name}=" if name in keyword_only else ""
            args.append(f"{by_name}_g({name!r}, _d{i})")
        source = f"def call(ctx):\n    _g = ctx.get\n    return _f({', '.join(args)})\n"
    # names are Python identifiers from the function's own signature
    exec(compile(source, logcapture.CALLER_FILE, "exec"), namespace)
    return namespace["call"]


def _make_renderer(parts: tuple) -> Callable[[dict], tuple[str, tuple]]:
    """`render(masked_fields) -> (message, unset names)`, generated per template (one f-string, a
    `try` per placeholder). Rendering from the masked view shows secrets as `***` and already-
    scrubbed text for other fields."""
    namespace: dict = {"_show": _show}
    lines = ["def render(m):", "    unset = ()"]
    text, seen = [], {}
    for i, part in enumerate(parts):
        if isinstance(part, str):
            text.append(part.replace("{", "{{").replace("}", "}}"))
            continue
        name = part[0]
        if name not in seen:
            seen[name] = f"v{i}"
            lines += [
                "    try:",
                f"        v{i} = m[{name!r}]",
                "    except KeyError:",
                f"        v{i} = {('<unset:' + name + '>')!r}",
                f"        unset += ({name!r},)",
                "    else:",
                f"        if type(v{i}) is not str:",
                f"            v{i} = str(v{i}) if type(v{i}) is int else _show(v{i})",
            ]
        text.append("{" + seen[name] + "}")
    # names are identifiers; the literal text is repr()-quoted (braces doubled)
    lines.append(f"    return f{''.join(text)!r}, unset")
    exec("\n".join(lines) + "\n", namespace)
    return namespace["render"]


def _code_location(func: Callable, info: system.SystemInfo) -> tuple[str, int]:
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is None:
        return "", 0
    return info.relative(code.co_filename), code.co_firstlineno


def _parse_traceparent(value: str) -> tuple[str, str | None]:
    parts = (value or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        return parts[1], parts[2]
    return events.new_trace_id(), None


def _depth() -> int:
    return getattr(_local, "depth", 0)


class Run:
    """One activation of one machine in one flow run."""

    __slots__ = (
        "machine",
        "flow",
        "fields",
        "trace_id",
        "span_id",
        "parent_span_id",
        "correlation_id",
        "causation_id",
        "secret_names",
        "set_by",
        "stack",
        "at",
        "_state",
        "_return",
        "_sink",
        "_lines",
        "_static",
        "_info",
        "_steps",
        "_masker",
        "_masked",
        "_last_step",
        "_ended",
        "_store",  # the flow store (None: durability off)
        "_buf",  # this thread's uncommitted step records for that store (durable.Buffer)
        "_replay",  # recorded steps of this flow run, by id, when it may have history
        "_attempt",  # the flow run's resume attempt (part of its hops' idempotency keys)
    )

    def __init__(
        self,
        machine: Machine,
        flow: str,
        fields: dict,
        *,
        trace_id: str,
        parent_span_id: str | None,
        correlation_id: str,
        causation_id: str | None,
        secret_names: set[str],
        stack: list[str],
        at: str | None,
    ) -> None:
        self.machine = machine
        self.flow = flow
        self.fields = fields  # the context: field name -> JSON data (secrets included)
        self.trace_id = trace_id
        self.span_id = events.new_span_id()
        self.parent_span_id = parent_span_id
        self.correlation_id = correlation_id
        self.causation_id = (
            causation_id  # id of the last event of this flow run (the next's cause)
        )
        self.secret_names = secret_names
        self.set_by: dict[str, str | None] = (
            {}
        )  # field -> step id that set it (None: the entry)
        self.stack = stack  # machines waiting for this one, outermost first
        self.at = at
        self._state = _OPEN
        self._return: tuple[str | None, dict] | None = None
        self._sink: events.Sink | None = None
        self._lines = (
            None  # the sink's line buffer (appended to directly on the hot path)
        )
        self._static: dict[str, tuple[bytes, ...]] = {}
        self._info: dict | None = None
        self._steps = machine.prepared(flow)
        self._masker: redact.Masker | None = None  # None: no secret value in the run
        self._masked: dict = {}
        self._remask()
        self._last_step: _Prepared | None = None
        self._ended = False
        self._store = self._buf = self._replay = None
        self._attempt = 0

    def __repr__(self) -> str:
        return (
            f"<Run {self.machine.name} flow={self.flow!r} at={self.at!r} {self._state}>"
        )

    # -- activation bookkeeping -----------------------------------------------------------------

    def _begin(self, kind: str) -> None:
        machine = self.machine
        store = durable.store_for(machine.info.dir)  # opened once per process
        if store is not None:
            self._store, self._buf = store, durable.buffer_for(store)
        _local.depth = _depth() + 1
        self._sink = events.sink(system.log_dir(machine.info), machine.name)
        self._lines = self._sink.lines
        self._info = {
            "kind": kind,
            "system": machine.system,
            "machine": machine.name,
            "flow": self.flow,
            "at": self.at,
            "correlation_id": self.correlation_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
        }
        if hooks.started_fns:
            hooks.emit_started(self._info)

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._state = _FAILED
        depth = _local.depth = max(_depth() - 1, 0)
        if hooks.finished_fns:
            hooks.emit_finished(self._info, error)
        buf = self._buf
        if buf is not None and self.at is None:  # the entry: the flow run ends here
            buf.ended.append(durable.ending(self._store, self.correlation_id, error))
        if depth == 0:
            events.flush_all()
        if buf and not (self.at is not None and durable.defers_commit(self._store)):
            # an entry's end, or an inbound hop's answer: commit before acknowledging (the HTTP
            # server commits a hop's checkpoints together with its stored answer instead)
            self._commit(error)

    def _commit(self, error: BaseException | None = None) -> None:
        """Commit this thread's step records (one transaction). A store that fails fails the run
        (nothing is acknowledged), unless it is failing already. The buffered events are written
        first: a crash between the two leaves an event whose step runs again (at-least-once),
        never a recorded step without its event."""
        events.flush_all()
        try:
            self._buf.commit()
        except Exception as problem:  # noqa: BLE001 - sqlite3/psycopg errors, one message
            failure = WiringError(
                f"the flow store {getattr(self._store, 'url', '')} failed to record flow run "
                f"{self.correlation_id}: {type(problem).__name__}: {problem}"
            )
            if error is None:
                raise failure from problem
            durable.complain(failure.message)

    def _raise(self, failure: RuntimeFailure, cause: BaseException | None = None):
        """Report `failure` (once), end an entry run, raise."""
        self._report(failure)
        if self.at is None:
            self._end(failure)
        if cause is not None:
            raise failure from cause
        raise failure  # keeps a __cause__ the failure already has

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

    def _check_open(self, what: str) -> None:
        if self._state is not _OPEN:
            failure = WiringError(
                f"run.{what}() on machine '{self.machine.name}' in flow '{self.flow}' after the "
                f"activation ended ({self._state})"
            )
            self._raise(failure)

    # -- secrets --------------------------------------------------------------------------------
    #
    # `_masked` mirrors the context as step events show it: secret fields `***`, and every token
    # occurrence of a secret value anywhere inside another field (strings, dict keys, nested lists
    # and dicts, a number's text) replaced by `***` (the rule: sl2s.runtime.redact). A step puts
    # the values it sets into the mirror as they are; when its event's fields are serialised, one
    # search in C (`Masker.stale`) says whether the bytes may hold a secret at all, and only then
    # are the mirror's values masked (`_mask_data`). That also catches a list or dict that a step
    # changed in place, and costs a step with a secret in the flow one search more than without.
    # Every other reader takes `_masked_fields()`, masked whole.

    def _remask(self) -> None:
        ctx, names = self.fields, self.secret_names
        # (a value once secret in this activation stays masked after its field changed)
        previous = self._masker
        masker = redact.masker_for(ctx, names, previous) if names else redact.EMPTY
        if masker:
            self._masker = masker
            self._masked = masker.fields(ctx, names)
        else:
            self._masker = None
            self._masked = {k: (MASK if k in names else v) for k, v in ctx.items()}

    def _scrub(self, text: str) -> str:
        masker = self._masker
        return text if masker is None else masker.text(text)

    def _masked_fields(self) -> dict:
        """The context as every event but a step's shows it (masked whole: not on the hot path)."""
        if self._masker is None:
            return self._masked.copy()
        return self._masker.fields(self.fields, self.secret_names)

    def _mask_data(self) -> None:
        """Mask the mirror's values from the context (again): secret fields stay `***`."""
        masker, names, masked = self._masker, self.secret_names, self._masked
        for key, value in self.fields.items():
            if key not in names:
                masked[key] = masker.value(value)

    def _outgoing(
        self, secrets: tuple[str, ...] | list[str], target: str = "?"
    ) -> tuple[dict, dict]:
        """The fields that travel on a hop to `target`: the non-secret context plus the listed
        secrets. A secret that does not travel does not travel inside another field either: in any
        field that holds its value (nested lists and dicts included) the value is replaced by `***`,
        and a WARNING event (`sl2s.secret_withheld`) names the field and the secret, never the
        value. Returns (fields, {name: the masked value sent}).
        """
        names = self.secret_names
        if secrets and not names.issuperset(secrets):
            names.update(secrets)
            self._remask()
        ctx = self.fields
        if not names:
            return dict(ctx), {}
        fields = {k: v for k, v in ctx.items() if k not in names or k in secrets}
        if self._masker is None:
            return fields, {}
        # every value secret in this activation (earlier values too) but those that travel
        travelling = {
            t for n in secrets if n in ctx for t in redact.secret_texts(ctx[n])
        }
        masker = redact.Masker(self._masker.texts - travelling)
        if not masker:
            return fields, {}
        replaced = {}
        for key, value in fields.items():
            if key not in names:
                shown = masker.value(value)
                if shown is not value:
                    fields[key] = replaced[key] = shown
        for key in replaced:
            value = ctx[key]
            held = [
                name
                for name in sorted(names)
                if name not in secrets
                and name in ctx
                and redact.Masker(redact.secret_texts(ctx[name])).value(value)
                is not value
            ]
            which = (
                f"secret {', '.join(map(repr, held))}"
                if held
                else "an earlier value of a secret"
            )
            self._emit(
                "sl2s.secret_withheld",
                "WARNING",
                f"field '{key}' holds the value of {which}, which machine '{target}' does "
                "not receive: it travels there as ***",
                {
                    "sl2s.secret.field": key,
                    "sl2s.secret.names": held,
                    "sl2s.hop.target": target,
                },
                plan=self._setter_plan(key),
            )
        return fields, replaced

    def _setter_plan(self, name: str) -> str | None:
        who = self.set_by.get(name)
        if not who or who.startswith("@"):
            return None
        return self.machine.info.plan_location(self.flow, who)

    # -- steps ----------------------------------------------------------------------------------

    def step(self, step_id: str) -> None:
        """Run the step `step_id` of this flow on this machine and write its event."""
        if self._state is not _OPEN:
            self._check_open("step")
        p = self._steps.get(step_id)
        if p is None:
            try:
                p = self.machine._prepare(self.flow, step_id)
            except WiringError as failure:
                self._raise(failure)
        if self._replay is not None and self._replayed(p):
            return  # completed before a crash or a failure: its recorded outcome, no new event
        try:
            result = p.call(self.fields)
        except (
            Exception
        ) as exc:  # noqa: BLE001 - the user's step failed: report and end the flow
            self._step_raised(p, exc)
        self._last_step = p
        if result is not None:
            if type(result) is dict and len(result) == 1:
                # the common case, inline: one plain, non-secret field set
                ((key, value),) = result.items()
                if (
                    key in p.keys_ok
                    and value is not UNSET
                    and key not in self.secret_names
                ):
                    # (masked, if it holds a secret, when the event is written)
                    self.fields[key] = self._masked[key] = value
                    self.set_by[key] = step_id
                else:
                    self._merge_result(p, result)
            else:
                self._merge_result(p, result)
        # -- the event (hot path: keep it flat) --
        # The parts of the line that do not change within this activation are serialised once;
        # a step joins them with its timestamp, message, ids, fields and unset list. (Joined here:
        # keeping the small orjson outputs alive until the buffer is written costs more.)
        masked = self._masked
        body, unset = p.render(masked)
        static = self._static.get(step_id)
        if static is None:
            static = self._static[step_id] = self._static_parts(p)
        try:
            fields = _dumps(masked)
        except TypeError:
            self._not_json(p, masked.copy())
        masker = self._masker
        if masker is not None:  # Masker.stale, inline
            for probe in masker.encoded:
                if fields.find(probe) >= 0:
                    # a field set or changed in place may hold a secret: mask the mirror
                    self._mask_data()
                    body, unset = p.render(masked)
                    fields = _dumps(masked)
                    break
        event_id = str(next(_ids[0]))  # events.new_event_id(), inline
        us = _time_ns() // 1000
        start, end, second = _clock[0]
        if not start <= us < end:
            start, end, second = _tick(us)
        cause = self.causation_id
        s0, s1, s2, s3, s4, s5, s6 = static
        micro = b"%06d" % (us - start)
        line = b"".join(
            (
                s0,
                second,
                micro,
                s1,
                _dumps(body),
                s2,
                event_id.encode(),
                s3,
                _dumps(cause),
                s4,
                fields,
                s5,
                _dumps(unset) if unset else b"[]",
                s6,
            )
        )
        lines = self._lines
        lines.append(line)
        if len(lines) >= _FLUSH_LINES:
            self._sink.flush()
        self.causation_id = event_id
        if self._buf is not None:  # the step's checkpoint, committed with the next group commit
            outcome, replayable = (
                _NOTHING_SET if result is None else self._outcome(result)
            )
            self._buf.steps.append(
                (
                    self.correlation_id,
                    step_id,
                    self.machine.name,
                    outcome,
                    replayable,
                    event_id,
                    us / 1e6,
                )
            )
        if _event_fns:
            # listeners get the written line, decoded only if they read more than the severity
            # and the event name (hooks.LazyEvent); hooks.emit_event, inline
            evt = _new(_StepEvent)
            evt.line = line
            for fn in _event_fns:
                try:
                    fn(evt)
                except (
                    Exception
                ) as error:  # noqa: BLE001 - a listener never breaks the flow
                    hooks._complain(fn, error)

    def _outcome(self, result: Mapping) -> tuple[str, bool]:
        """What a step's checkpoint keeps: (JSON text of the fields it set, as the masked view
        has them; whether replaying it restores the context). Not replayable when it set a secret
        (never stored), unset a field, or set a value that a secret had to be masked out of."""
        ctx, masked, names = self.fields, self._masked, self.secret_names
        if type(result) is dict and len(result) == 1:  # the common case: one plain field
            for key in result:
                if key not in names and masked.get(key, _MISSING) is ctx.get(key, masked):
                    return _dumps(result).decode(), True
        kept, replayable = {}, True
        for key in result:
            if key in names or key not in ctx:
                replayable = False
                continue
            value = masked.get(key, _MISSING)
            if value is not ctx[key]:
                replayable = False
                if value is _MISSING:
                    continue
            kept[key] = value
        return _dumps(kept).decode(), replayable

    def _replayed(self, p: _Prepared) -> bool:
        """Replay step `p` from its checkpoint when it has a replayable one: merge the recorded
        outcome, continue causation from its recorded event, write nothing."""
        record = self._replay.get(p.id)
        if record is None or not record.replayable:
            return False
        outcome = record.outcome
        if outcome:
            self.fields.update(outcome)
            for key in outcome:
                self.set_by[key] = p.id
            self._remask()
        if record.event_id:
            self.causation_id = record.event_id
        self._last_step = p
        return True

    def _static_parts(self, p: _Prepared) -> tuple:
        """This step's event line in this activation, serialised with marks where the changing
        values go and cut there: seven byte strings, between which a step puts the second's
        date/time text and the microseconds, then the JSON of body, event id (inside its quotes),
        cause, fields and unset (key order is the documented one).
        """
        attributes = {
            "sl2s.event_id": _MARKS[2],
            "sl2s.correlation_id": self.correlation_id,
            "sl2s.causation_id": _MARKS[3],
            "sl2s.flow": self.flow,
            "sl2s.step": p.id,
            "sl2s.machine": self.machine.name,
            "sl2s.template": p.template,
            "sl2s.plan": p.plan,
            "sl2s.fields": _MARKS[4],
            "sl2s.unset": _MARKS[5],
            "code.filepath": p.filepath,
            "code.lineno": p.lineno,
            "code.function": p.function,
        }
        if p.plan is None:
            del attributes["sl2s.plan"]
        event = {
            "timestamp": _MARKS[0],
            "severity_text": "INFO",
            "severity_number": 9,
            "body": _MARKS[1],
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "event_name": "sl2s.step",
            "resource": self.machine.resource,
            "attributes": attributes,
        }
        rest = _dumps(event, option=_NL)
        parts = []
        for mark, inside, after in _CUTS:
            mark = _dumps(mark)
            if inside:  # the value goes inside the quotes (it needs no escaping)
                mark = mark[1:-1]
            before, found, rest = rest.partition(mark)
            assert found, mark
            parts.append(before)
            rest = after + rest
        parts.append(rest)
        return tuple(parts)

    def _not_json(self, p: _Prepared, fields: dict):
        ctx = self.fields
        bad = _unserialisable(fields)
        where = ", ".join(
            f"'{name}' ({type(ctx[name]).__name__}, set by {self._setter(name)})"
            for name in bad
        )
        self._contract(
            p, f"field {where} is not JSON data; the context must survive a hop as JSON"
        )

    def _merge_result(self, p: _Prepared, result: object) -> None:
        if type(result) is not dict:
            if not isinstance(result, Mapping):
                self._contract(
                    p,
                    f"step function {p.function} returned {type(result).__name__}; a step returns "
                    "None or a mapping of field names to values",
                )
            result = dict(result)
        ctx, set_by, names, masked = (
            self.fields,
            self.set_by,
            self.secret_names,
            self._masked,
        )
        remask = False
        step_id = p.id
        for key, value in result.items():
            if type(key) is not str or not key.isidentifier():
                self._contract(
                    p,
                    f"step function {p.function} returned the key {key!r}; field names are "
                    "identifiers",
                )
            p.keys_ok.add(key)
            set_by[key] = step_id
            if value is UNSET:
                ctx.pop(key, None)
                masked.pop(key, None)
                remask = remask or key in names
                continue
            ctx[key] = value
            if key in names:
                remask = True
            else:
                masked[key] = value  # masked if need be when the event is written
        if remask:
            self._remask()

    def _body(self, p: _Prepared) -> str:
        return p.render(self._masked_fields())[0]

    def _setter(self, name: str) -> str:
        who = self.set_by.get(name)
        if who is None:
            return "the flow's caller"
        if who.startswith("@"):
            return f"machine '{who[1:]}'"
        plan = self.machine.info.plan_location(self.flow, who)
        return f"step '{who}'" + (f" at {plan}" if plan else "")

    def _emit(
        self,
        event_name: str,
        severity: str,
        body: str,
        extra: dict,
        *,
        step: _Prepared | None = None,
        plan: str | None = None,
        fields: bool = True,
        severity_number: int | None = None,
    ) -> str:
        """Write any event of this run (log lines, failures); returns its id."""
        event_id = _new_event_id()
        attributes = {
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
        if fields:
            masked = self._masked_fields()
            for name in _unserialisable(masked) if masked else ():
                masked[name] = f"<not JSON: {type(masked[name]).__name__}>"
            attributes["sl2s.fields"] = masked
            if step is not None:
                attributes["sl2s.unset"] = [
                    n for n in step.placeholders if n not in self.fields
                ]
        attributes.update(extra)
        event = {
            "timestamp": _now(),
            "severity_text": severity,
            "severity_number": severity_number or events.SEVERITY.get(severity, 9),
            "body": body,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "event_name": event_name,
            "resource": self.machine.resource,
            "attributes": attributes,
        }
        try:
            line = _dumps(event, option=_NL)
        except TypeError:
            line = _dumps(event, option=_NL, default=repr)
        self._sink.write(line)
        self.causation_id = event_id
        if _event_fns:
            # the written line, decoded lazily: listeners that keep events (the flight recorder)
            # must not see later in-place changes of the context's lists and dicts
            hooks.emit_event(
                _LazyEvent(
                    line,
                    event["severity_number"],
                    severity,
                    event_name,
                    "exception.type" in attributes,
                )
            )
        return event_id

    def _emit_log(self, p: _Prepared, record) -> None:
        """A stdlib log record made inside a step: its `sl2s.log` event, masked. When the record's
        text holds a secret, the record itself is masked too (message, exception text, stack), so
        that the process's own handlers (stderr, files) never write the value either."""
        scrub = self._scrub
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad %-args: keep the template
            message = str(record.msg)
        template = record.msg if isinstance(record.msg, str) else repr(record.msg)
        severity = next(n for level, n in _LOG_SEVERITY if record.levelno >= level)
        extra = {
            "sl2s.log.template": scrub(template),
            "sl2s.log.logger": record.name,
            "code.filepath": self.machine.info.relative(record.pathname),
            "code.lineno": record.lineno,
            "code.function": record.funcName,
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            extra["exception.type"] = scrub(_type_name(exc))
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

    def _contract(self, p: _Prepared, message: str):
        """The step broke the step contract: ERROR event, StepFailed(kind="contract")."""
        failure = self._step_failed(
            p, "sl2s.StepContractError", self._scrub(message), kind="contract"
        )
        self._raise(failure)

    def _step_raised(self, p: _Prepared, exc: Exception):
        tb = exc.__traceback__
        while (
            tb is not None
            and tb.tb_next is not None
            and tb.tb_frame.f_code.co_filename
            in (
                __file__,
                logcapture.CALLER_FILE,
            )
        ):
            tb = tb.tb_next  # only the user's frames
        frames = traceback.extract_tb(tb)
        raised_at = (
            f"{self.machine.info.relative(frames[-1].filename)}:{frames[-1].lineno}"
            if frames
            else f"{p.filepath}:{p.lineno}"
        )
        # the whole text, chained causes included, is masked (their messages and source lines)
        stack = self._scrub("".join(traceback.format_exception(type(exc), exc, tb)))
        failure = self._step_failed(
            p,
            self._scrub(_type_name(exc)),
            self._scrub(str(exc)),
            kind="exception",
            stack=stack,
            raised_at=raised_at,
        )
        self._raise(failure, exc)

    def _step_failed(
        self,
        p: _Prepared,
        exc_type: str,
        message: str,
        *,
        kind: str,
        stack: str | None = None,
        raised_at: str | None = None,
    ) -> StepFailed:
        """Emit the failed step's ERROR event; the StepFailed that carries it up the stack."""
        attributes = {"exception.type": exc_type, "exception.message": message}
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

    # -- hops -----------------------------------------------------------------------------------

    def _check_json(self, fields: dict, target: str, at: str) -> None:
        try:
            _dumps(fields)
        except TypeError as error:
            bad = _unserialisable(fields) or [next(iter(fields), "?")]
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

    def call(
        self,
        target: str,
        *,
        at: str,
        resume_at: str | None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        """Hop to `target`, which runs its segment starting at step `at`; wait until control comes
        back; check it resumes at `resume_at`; merge the fields that came back."""
        if self._state is not _OPEN:
            self._check_open("call")
        machine = self.machine
        fields, replaced = self._outgoing(secrets, target)
        self._check_json(fields, target, at)
        if self._buf:
            # a hop is an effect others see: what led to it is committed first, so a segment run
            # again after a crash replays it and re-sends this hop with the same body and key
            try:
                self._commit()
            except WiringError as failure:
                self._raise(failure)
        request = HopRequest(
            system=machine.system,
            flow=self.flow,
            source=machine.name,
            target=target,
            at=at,
            resume_at=resume_at,
            fields=fields,
            secrets=sorted(self.secret_names),
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            traceparent=f"00-{self.trace_id}-{self.span_id}-01",
            idempotency_key=durable.hop_key(self.correlation_id, self._attempt, at),
            stack=[*self.stack, machine.name],
        )
        try:
            response = select_transport().call(request)
        except RuntimeFailure as failure:
            self._raise(failure)
        if response.causation_id:
            self.causation_id = response.causation_id
        if response.secrets:
            self.secret_names.update(response.secrets)
        if response.error is not None:
            failure = failure_from_dict(response.error)
            failure.reported = (
                True  # the machine that produced it wrote its ERROR event
            )
            self._raise(failure)
        if response.resume_at != resume_at:
            self._raise(
                WiringError(
                    f"machine '{target}' handed control back to '{machine.name}' at step "
                    f"'{response.resume_at}', but the wiring of '{machine.name}' expects "
                    f"'{resume_at}' (machines generated from different plans: regenerate)",
                    (
                        machine.info.plan_location(self.flow, resume_at)
                        if resume_at
                        else None
                    ),
                )
            )
        returned = response.fields
        for (
            name,
            text,
        ) in replaced.items():  # came back as sent: keep our unmasked original
            if returned.get(name) == text:
                del returned[name]
        self.fields.update(returned)
        origin = "@" + target
        for name in returned:
            self.set_by[name] = origin
        self._remask()

    def return_to(
        self, target: str, resume_at: str | None = None, secrets: tuple[str, ...] = ()
    ) -> Run:
        """End this activation: control goes back to `target` (a machine waiting up the stack), to
        resume at step `resume_at` (None: the flow is done), with the non-secret context and the
        listed secrets. Returns this run, which the segment function returns."""
        if self._state is not _OPEN:
            self._check_open("return_to")
        if target not in self.stack:
            self._raise(
                WiringError(
                    f"machine '{self.machine.name}' returns to '{target}', which is not waiting "
                    f"for it in flow '{self.flow}' (waiting: {', '.join(self.stack) or 'nobody'})"
                )
            )
        self._return = (resume_at, self._outgoing(secrets, target)[0])
        self._state = _RETURNED
        return self

    def finish(self) -> dict:
        """End the flow run on its entry machine; returns the final context (secrets included)."""
        if self._state is not _OPEN:
            self._check_open("finish")
        if self.at is not None:
            self._raise(
                WiringError(
                    f"run.finish() in a segment of machine '{self.machine.name}' (flow "
                    f"'{self.flow}' at '{self.at}'); segments end with run.return_to(...)"
                )
            )
        self._state = _FINISHED
        self._end(None)
        return dict(self.fields)


def _unserialisable(fields: dict) -> list[str]:
    bad = []
    for name, value in fields.items():
        try:
            _dumps(value)
        except TypeError:
            bad.append(name)
    return bad
