"""Process-wide registries: step functions (filled by `@step`), machines (filled by `Machine(...)`).

A step is registered under (machine package, flow, step id). The machine package is the package of
the module that defines the function: `services/server/login.py` (module `services.server.login`)
registers for the machine package `services.server`, which is what `Machine("services.server._wiring",
"server")` looks steps up under. So a step runs on the machine whose directory holds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sl2s.names import step_slug
from sl2s.runtime.errors import WiringError


class _Unset:
    """A field that has no value. Falsy; `x is UNSET` tells it from None (a set JSON null)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass(frozen=True)
class StepSpec:
    """One `@step` function as registered."""

    package: str  # machine package, e.g. "services.server"
    flow: str
    id: str
    template: str
    func: Callable


# machine package -> {(flow, step id): StepSpec}
_STEPS: dict[str, dict[tuple[str, str], StepSpec]] = {}
# (system package, machine name) -> Machine
_LOCK = threading.RLock()
version = (
    0  # bumped on every registration; caches built from the registry compare against it
)


def _where(func: Callable) -> str:
    code = getattr(func, "__code__", None)
    if code is None:
        return f"{func.__module__}.{getattr(func, '__qualname__', func)}"
    return f"{code.co_filename}:{code.co_firstlineno}"


def step(
    flow: str, template: str, id: str | None = None
) -> Callable[[Callable], Callable]:
    """Register the decorated function as the step `(flow, id)` of the machine whose package holds it.

    `template` is the step's log text exactly as in the plan; `id` defaults to
    `sl2s.names.step_slug(template)`. The function is returned unchanged (call it in unit tests).
    """
    step_id = id if id is not None else step_slug(template)

    def register(func: Callable) -> Callable:
        global version
        module = func.__module__ or ""
        package = module.rpartition(".")[0]
        spec = StepSpec(package, flow, step_id, template, func)
        with _LOCK:
            steps = _STEPS.setdefault(package, {})
            old = steps.get((flow, step_id))
            if old is not None and (old.func.__module__, old.func.__qualname__) != (
                module,
                func.__qualname__,
            ):
                raise WiringError(
                    f"step '{step_id}' of flow '{flow}' is defined twice on machine package "
                    f"'{package}': {_where(old.func)} and {_where(func)}",
                    _where(func),
                )
            steps[(flow, step_id)] = spec
            version += 1
        return func

    return register


def steps_of(package: str) -> dict[tuple[str, str], StepSpec]:
    return _STEPS.get(package, {})


def packages_with(flow: str, step_id: str) -> list[str]:
    """Machine packages that registered `(flow, step_id)` (to explain a step found elsewhere)."""
    return sorted(p for p, steps in _STEPS.items() if (flow, step_id) in steps)


def flow_templates(flow: str) -> list[str]:
    """Templates of every registered step of `flow`, on any machine (to know its secrets)."""
    return [
        s.template
        for steps in _STEPS.values()
        for (f, _), s in steps.items()
        if f == flow
    ]
