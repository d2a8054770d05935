"""The follow endpoint's reading (sl2s.observe.follow) and the webhook sender's retries."""

from __future__ import annotations

import http.server
import threading

from sl2s.observe.announce import Announcement
from sl2s.observe.follow import decode_cursor, encode_cursor, read_new
from sl2s.observe.watch import Sinks


def test_only_complete_new_lines_of_the_log_dirs_event_files_are_read(tmp_path):
    (tmp_path / "server.jsonl").write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    (tmp_path / "incident-x.jsonl").write_bytes(b'{"i":1}\n')
    (tmp_path / "notes.txt").write_bytes(b"secret\n")
    lines, offsets = read_new(tmp_path, {})
    assert lines == ['{"a":1}', '{"a":2}'] and offsets == {"server.jsonl": 16}
    with (tmp_path / "server.jsonl").open("ab") as handle:
        handle.write(b"3}\n")
    lines, offsets = read_new(tmp_path, offsets)
    assert lines == ['{"a":3}'] and offsets == {"server.jsonl": 24}
    (tmp_path / "server.jsonl").write_bytes(
        b'{"b":1}\n'
    )  # replaced: read from the start
    assert read_new(tmp_path, offsets)[0] == ['{"b":1}']


def test_a_cursor_cannot_name_other_files(tmp_path):
    (tmp_path / "server.jsonl").write_bytes(b'{"a":1}\n')
    outside = tmp_path.parent / "outside.jsonl"
    outside.write_bytes(b'{"leak":1}\n')
    cursor = encode_cursor({"../outside.jsonl": 0, "server.jsonl": 0})
    lines, offsets = read_new(tmp_path, decode_cursor(cursor))
    assert lines == ['{"a":1}']
    assert decode_cursor("not base64 json!") is None
    assert decode_cursor(encode_cursor({"x": -5})) == {}


def test_the_webhook_is_retried_and_a_failure_names_only_its_host():
    statuses = [500, 200]
    bodies = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(statuses.pop(0) if statuses else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    warnings = []
    port = server.server_address[1]
    try:
        sinks = Sinks(None, warnings.append, f"http://127.0.0.1:{port}/hooks/T0KEN")
        sinks.send(Announcement("new pattern", "k1", "first"))
        sinks.send(
            Announcement("new pattern", "k2", "second")
        )  # answered 404: not retried
        sinks.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(bodies) == 3 and sinks.sent == 1
    assert warnings == [
        f"watch: webhook http://127.0.0.1:{port}/…: not delivered (HTTP 404)"
    ]
