"""Preparing a registered step to run fast on one machine: its plan line, its code location, a
generated caller that takes its parameters from the context by name, and a generated renderer of its
log line (`Prepared`). Done once per step and machine, on the step's first run."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

from sl2s.runtime.core import logcapture, registry, system
from sl2s.runtime.core.registry import UNSET
from sl2s.runtime.core.system import SystemInfo
from sl2s.runtime.errors import WiringError
from sl2s.template import parse, show_value


class StepHost(Protocol):
    """What preparing a step needs of its machine (`Machine` is one)."""

    name: str
    package: str
    system: str

    @property
    def info(self) -> SystemInfo: ...

    def prepared(self, flow: str) -> dict[str, Prepared]: ...


class Prepared:
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
        "line",
    )

    id: str
    func: Callable[..., object]
    template: str
    parts: tuple[str | tuple[str, bool], ...]
    placeholders: tuple[str, ...]
    params: tuple[tuple[str, object], ...]
    var_kw: bool
    plan: str | None
    filepath: str
    lineno: int
    function: str
    call: Callable[[dict], Any]
    render: Callable[[dict], tuple[str, tuple[str, ...]]]
    keys_ok: set[str]
    # its event line serialised once, cut where the changing values go (run/events.py)
    line: tuple[bytes, ...] | None


def prepare(machine: StepHost, flow: str, step_id: str) -> Prepared:
    """Prepare step `step_id` of `flow` on `machine` (WiringError when no @step function is there)."""
    spec = registry.steps_of(machine.package).get((flow, step_id))
    info = machine.info
    plan = info.plan_location(flow, step_id)
    if spec is None:
        message = f"no @step function for step '{step_id}' of flow '{flow}' on machine '{machine.name}'"
        elsewhere = [
            package
            for package in registry.packages_with(flow, step_id)
            if package.rpartition(".")[0] == machine.system
        ]
        if elsewhere:
            message += f"; it is defined in {', '.join(elsewhere)} (move it with `sl2s rebalance`)"
        else:
            message += f" (expected in {machine.package.replace('.', '/')}/{flow}.py)"
        raise WiringError(message, plan)
    func = spec.func
    p = Prepared()
    p.id, p.func, p.template, p.plan = step_id, func, spec.template, plan
    parts: list = []
    for part in parse(spec.template):
        parts.append(part if isinstance(part, str) else (part.name, part.secret))
    p.parts = tuple(parts)
    p.placeholders = tuple(dict.fromkeys(x[0] for x in parts if not isinstance(x, str)))
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
    p.line = None
    p.filepath, p.lineno, p.function = where[0], where[1], func.__qualname__
    machine.prepared(flow)[step_id] = p
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
