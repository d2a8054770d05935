"""The runtime's surface that generated code and step modules use, with precise types.

    from sl2s.api import UNSET, Machine, Run, Unset, step

At run time these are the runtime's own objects (`sl2s.runtime`), re-exported unchanged: nothing
is wrapped, nothing costs a call more. For a type checker they are declared here with the exact
types generated code relies on, so that a project checked with `mypy --strict` or pyright's
strict mode sees `@step` keep the decorated function's type, `@machine.segment` keep the
segment's, `run.finish()` return a `dict[str, object]`, and the flight recorder's `install`
be fully typed. tests/test_api.py checks that these declarations name the same parameters as
the runtime's functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

__all__ = [
    "UNSET",
    "Machine",
    "Run",
    "Unset",
    "install_flight_recorder",
    "refuse_import_over_pending_rebalance",
    "step",
]

if TYPE_CHECKING:
    _F = TypeVar("_F", bound=Callable[..., Any])

    class Unset:
        """The type of `UNSET`: a field that has no value (falsy)."""

        def __bool__(self) -> bool: ...

    UNSET: Unset

    class Run(Protocol):
        """One activation of a flow on a machine (what the wiring calls)."""

        def step(self, step_id: str) -> None: ...

        def call(
            self,
            target: str,
            *,
            at: str,
            resume_at: str | None,
            secrets: tuple[str, ...] = (),
        ) -> None: ...

        def return_to(
            self,
            target: str,
            resume_at: str | None = None,
            secrets: tuple[str, ...] = (),
        ) -> Run: ...

        def finish(self) -> dict[str, object]: ...

    _Segment = TypeVar("_Segment", bound=Callable[[Run], Run])

    class Machine:
        """A machine of a generated system (`Machine(__name__, "server")` in its wiring)."""

        def __init__(self, wiring_module_name: str, machine: str) -> None: ...

        def start(self, flow: str, /, **fields: object) -> Run: ...

        def segment(self, flow: str, *, at: str) -> Callable[[_Segment], _Segment]: ...

    def step(flow: str, template: str, id: str | None = None) -> Callable[[_F], _F]: ...

    def install_flight_recorder(
        log_dir: str | os.PathLike[str] | None = None,
        *,
        services_dir: str | os.PathLike[str] | None = None,
        subscribe: Callable[..., object] | None = None,
        otel: bool = True,
        **options: object,
    ) -> object: ...

    def refuse_import_over_pending_rebalance(package_file: str) -> None: ...

else:
    from sl2s.observe import install as install_flight_recorder
    from sl2s.rebalance.journal import (
        refuse_import_over_pending as refuse_import_over_pending_rebalance,
    )
    from sl2s.runtime import UNSET, Machine, Run, step

    Unset = type(UNSET)
