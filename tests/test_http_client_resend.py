"""The client's one immediate resend on a fresh connection carries a new signature.

When a pooled keep-alive connection dies under a request (the machine was killed and `sl2s up`
restarted it on the same socket), the client resends at once on a new connection. The first send
may have reached the old process, which recorded its signature as a nonce in the flow store; the
new process would refuse the same signature as a replay (401). So every send is signed anew.
"""

from __future__ import annotations

import socket
import threading
import time

from sl2s.runtime.transport.http import protocol as p
from sl2s.runtime.transport.http.client import HopClient


class DropsTheSecondRequest:
    """A loopback HTTP server: answers the first request on a connection and keeps it alive,
    reads the second and closes the connection without answering (a process killed mid-request),
    and on the next connection refuses a signature it has seen (401, as a replay) or answers 200.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn: socket.socket) -> dict[str, str] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += conn.recv(65536)
        return headers

    def _answer(self, conn: socket.socket, status: int) -> None:
        conn.sendall(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            % status
        )

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            self.connections += 1
            self._read_request(conn)
            self._answer(conn, 200)
            second = self._read_request(conn)  # reached the process, never answered
            assert second is not None
            self.seen.append(second[p.H_SIGNATURE])
        conn, _ = self.sock.accept()
        with conn:
            self.connections += 1
            resent = self._read_request(conn)
            assert resent is not None
            self._answer(conn, 401 if resent[p.H_SIGNATURE] in self.seen else 200)

    def close(self) -> None:
        self.sock.close()


def test_a_resend_after_a_dropped_keep_alive_connection_is_signed_anew():
    server = DropsTheSecondRequest()
    signatures: list[str] = []

    def headers_for(now: float) -> dict[str, str]:
        signature = f"sig-{now:.3f}"
        signatures.append(signature)
        return {
            p.H_IDEMPOTENCY_KEY: "cid-0001.0.check",
            p.H_SIGNATURE: signature,
            p.H_TIMESTAMP: str(int(now * 1000)),
        }

    client = HopClient(attempts=1, sleep=lambda s: None)
    try:
        for _ in range(2):
            answer = client.post(
                target="server",
                base_url=f"http://127.0.0.1:{server.port}",
                path="/sl2s/v1/hop/login/check",
                body=b"{}",
                idempotency_key="cid-0001.0.check",
                headers_for=headers_for,
                deadline=time.time() + 5,
            )
            assert answer.status == 200
    finally:
        client.close()
        server.close()
    # three sends: the second was dropped and resent at once, with another signature
    assert len(signatures) == 3 and signatures[1] != signatures[2]
    assert server.connections == 2
