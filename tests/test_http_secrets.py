"""The login sample's `#password` over HTTP, checked on the wire: the bytes each server received.

The server machine runs in a real uvicorn server (a thread of this process) behind an ASGI
wrapper that keeps every request body; the client machine's entry runs here and hops over HTTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sl2s.runtime.transport import register_transport
from sl2s.runtime.transport.http.config import HttpConfig
from sl2s.runtime.transport.http.sender import HttpTransport
from sl2s.runtime.transport.http.server import machine_app

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import ThreadServer, sl2s  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KEY = b"secret-test-key-" + b"0" * 32
PASSWORD = "hunter2-do-not-leak"


class Recording:
    """ASGI wrapper that keeps the body of every HTTP request it passes on."""

    def __init__(self, app) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.bodies.append(b"".join(chunks))
            return message

        await self.app(scope, recording_receive, send)


def generate_login(out: Path, server_uses_password: bool) -> Path:
    done = sl2s("generate", str(ROOT / "sample_plans" / "login.csv"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    if server_uses_password:
        module = out / "server" / "login.py"
        text = module.read_text(encoding="utf-8")
        text = text.replace(
            "def testing_password_for_username(username: object) -> None:",
            "def testing_password_for_username(username, password):\n"
            "    assert password == " + repr(PASSWORD),
        )
        module.write_text(text, encoding="utf-8")
        done = sl2s(
            "generate", str(ROOT / "sample_plans" / "login.csv"), "--out", str(out)
        )
        assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def http_only(monkeypatch, tmp_path):
    monkeypatch.setenv("SL2S_TRANSPORT", "http")
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    yield
    register_transport("http", HttpTransport)


def run_login(tree: Path) -> tuple[dict, list[bytes]]:
    config = HttpConfig(keys=(KEY,))
    recorder = Recording(machine_app(tree, "server", config))
    with ThreadServer(recorder) as server:
        wired = HttpConfig(
            urls={"server": server.url}, sources={"server": "test"}, keys=(KEY,)
        )
        register_transport("http", lambda: HttpTransport(wired))
        import importlib

        sys.path.insert(0, str(tree.parent))
        client = importlib.import_module(f"{tree.name}.client")
        result = client.login(username="ann", password=PASSWORD)
    return result, recorder.bodies


def test_a_secret_the_server_does_not_use_never_reaches_it(tmp_path, http_only):
    tree = generate_login(tmp_path / "svc_login_plain", server_uses_password=False)
    result, bodies = run_login(tree)
    assert result == {
        "username": "ann",
        "password": PASSWORD,
    }  # the client keeps its secret
    assert len(bodies) == 1
    assert b'"username":"ann"' in bodies[0]
    assert PASSWORD.encode() not in bodies[0]
    assert b'"password":' not in bodies[0]  # not even masked: the field is not sent


def test_a_secret_the_server_uses_reaches_it_and_no_log(tmp_path, http_only):
    tree = generate_login(tmp_path / "svc_login_uses", server_uses_password=True)
    assert 'secrets=("password",)' in (tree / "client" / "_wiring.py").read_text()
    result, bodies = run_login(tree)
    assert result["password"] == PASSWORD
    assert len(bodies) == 1 and PASSWORD.encode() in bodies[0]
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.jsonl"))
    assert "testing_password_for_username" in logs and PASSWORD not in logs
