"""The in-process core of the runtime: `Machine` (machine.py), `Run` split by concern (run/), the
step registry (registry.py), preparing steps (prepare.py), the hop contract every transport
implements (hop.py), event writing (events.py), run metadata (metadata.py), crash details
(crash.py) and the runtime's side of the flow store (durable.py). It imports nothing from
`sl2s.runtime.transport`: transports are found by name (docs/architecture.md)."""
