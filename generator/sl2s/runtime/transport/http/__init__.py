"""The `http` transport: one process per machine, hops as signed HTTP requests (docs/hop-protocol.md).
Importing this package registers it (`SL2S_TRANSPORT=http`)."""

from sl2s.runtime.transport.http.sender import HttpTransport

__all__ = ["HttpTransport"]
