"""How hops travel between machines: `local` (same process, the default) and `http` (one process
per machine). Both implement the contract of `sl2s.runtime.core.hop`, re-exported here as the plug-in
point for other transports:

    from sl2s.runtime.transport import HopRequest, HopResponse, register_transport

    register_transport("grpc", GrpcTransport)   # then SL2S_TRANSPORT=grpc

- `local.py`: `LocalTransport`, the target machine in this process, through JSON bytes.
- `http/`: the signed HTTP protocol (`protocol.py`), its client (`client.py`, `sender.py`: the
  `http` transport), its server (`server.py`, `guard.py`), the durable idempotency of inbound hops
  (`idempotency.py`), deadlines (`deadlines.py`), version-skew refusal (`version.py`) and the
  settings that bind machines to URLs and keys (`config.py`).
"""

from sl2s.runtime.core.hop import (
    HopRequest,
    HopResponse,
    Transport,
    register_transport,
    select_transport,
    transports,
)

__all__ = [
    "HopRequest",
    "HopResponse",
    "Transport",
    "register_transport",
    "select_transport",
    "transports",
]
