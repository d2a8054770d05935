"""`local`, the default transport: every machine in this process, in this thread. The request and
the response are still encoded to JSON bytes and decoded again, so what would not survive a real hop
fails here too, and values change type exactly as they would over the wire (orjson: tuples become
lists, datetimes ISO strings, dataclasses objects)."""

from __future__ import annotations

from sl2s.runtime.core.hop import HopRequest, HopResponse, register_transport
from sl2s.runtime.core.machine import load_machine
from sl2s.runtime.errors import HopFailed, WiringError


class LocalTransport:
    """All machines in this process; every hop still round-trips through JSON bytes."""

    name = "local"

    def call(self, request: HopRequest) -> HopResponse:
        delivered = HopRequest.from_json(request.to_json())
        try:
            target = load_machine(delivered.system, delivered.target)
        except WiringError:
            raise
        except (
            Exception
        ) as error:  # noqa: BLE001 - the target's own code failed to import
            failure = HopFailed(
                f"machine '{request.target}' could not be loaded: "
                f"{type(error).__name__}: {error}",
                source=request.source,
                target=request.target,
                flow=request.flow,
                at=request.at,
            )
            raise failure from error  # __cause__: the import error, with its traceback
        response = target.handle(delivered)
        return HopResponse.from_json(response.to_json())


register_transport("local", LocalTransport)
