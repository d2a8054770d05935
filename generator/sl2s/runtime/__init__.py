"""The runtime that generated services import (see docs/runtime.md).

    from sl2s.runtime import UNSET, Machine, Run, step

- `@step(flow, template, id=None)` registers a user function as a step of the machine whose package
  holds it.
- `Machine(__name__, "server")` in `<system>/<machine>/_wiring.py`; `machine.start(flow, **fields)`
  begins a flow run (entry), `@machine.segment(flow, at=...)` registers what an inbound hop runs,
  `machine.handle(hop_request)` runs it (transports call this).
- `Run.step`, `Run.call`, `Run.return_to`, `Run.finish`: what the straight-line wiring does.
- `run_metadata(actor=..., ticket=..., reason=...)`: a context manager; flow runs started inside it
  carry that metadata on every event, on every machine (`sl2s.run_meta`).
- `step_key()`: inside a step, `"<correlation id>:<step id>"`, the same every time the step runs in
  that flow run (also after a crash or a resume): a key for the step's own idempotent effects.

Failures raise `StepFailed` / `WiringError` / `HopFailed` (all `sl2s.diagnostics.Sl2sError`).
Plug-in points: `sl2s.runtime.hooks` (listeners), `sl2s.runtime.transport` (transports).
"""

from sl2s.runtime.core.durable import step_key
from sl2s.runtime.core.machine import Machine, load_machine
from sl2s.runtime.core.metadata import run_metadata
from sl2s.runtime.core.registry import UNSET, step
from sl2s.runtime.core.run import Run
from sl2s.runtime.errors import HopFailed, RuntimeFailure, StepFailed, WiringError
from sl2s.runtime.hooks import subscribe, unsubscribe
from sl2s.runtime.transport import (
    HopRequest,
    HopResponse,
    Transport,
    register_transport,
    select_transport,
)

__all__ = [
    "UNSET",
    "HopFailed",
    "HopRequest",
    "HopResponse",
    "Machine",
    "Run",
    "RuntimeFailure",
    "StepFailed",
    "Transport",
    "WiringError",
    "load_machine",
    "register_transport",
    "run_metadata",
    "select_transport",
    "step",
    "step_key",
    "subscribe",
    "unsubscribe",
]
