"""`sl2s rebalance` moving a step A -> B -> A restores every file byte for byte, lock included,
when the step's helpers sit anywhere in the module (here: at its end, after the other steps): the
lock remembers where the moved definitions came from until they are back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SL2S = str(Path(sys.executable).parent / "sl2s")

HELPERS_AT_THE_END = """

PEPPER = "sl2s"


def _digest(text: str) -> str:
    # Peppered SHA-256, shortened.
    return hashlib.sha256((PEPPER + text).encode()).hexdigest()[:12]


def normalise(username: str) -> str:
    return username.strip().lower()
"""


def sl2s(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [SL2S, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sl2s" not in p.parts and "__pycache__" not in p.parts
    }


def test_a_step_moved_away_and_back_restores_every_file(tmp_path: Path) -> None:
    plan = (ROOT / "sample_plans" / "login.csv").read_text()
    (tmp_path / "plan.csv").write_text(plan)
    sl2s(tmp_path, "generate", "plan.csv")
    server = tmp_path / "services" / "server" / "login.py"
    text = server.read_text().replace(
        "from sl2s.api import step\n", "import hashlib\n\nfrom sl2s.api import step\n"
    )
    for function, body in [
        ("received_request_to_login_as_username", "normalise(username)"),
        ("testing_password_for_username", "_digest(normalise(username))"),
    ]:
        text = text.replace(
            f"def {function}(username: object) -> None:\n"
            "    # Not implemented yet: this step does nothing.\n"
            "    return None\n",
            f"def {function}(username: str) -> None:\n    print({body})\n",
        )
    server.write_text(text + HELPERS_AT_THE_END)
    sl2s(tmp_path, "generate", "plan.csv")
    before = snapshot(tmp_path / "services")

    moved = plan.replace(
        "Testing password for :username\tserver", "Testing password for :username\tauth"
    )
    (tmp_path / "plan.csv").write_text(moved)
    out = sl2s(tmp_path, "rebalance", "plan.csv", "--allow-dirty").stdout
    assert "carried helpers: PEPPER, _digest" in out
    auth = (tmp_path / "services" / "auth" / "login.py").read_text()
    assert "def _digest" in auth and "def normalise" not in auth
    lock = json.loads((tmp_path / "services" / "sl2s.lock.json").read_text())
    assert lock["origins"]["auth/login.py"]["_digest"] == {
        "above": "finish_handling_user_login",
        "below": "",  # the last definition (normalise went to the shared module first)
        "from": "server/login.py",
    }
    # a plain generate keeps what the lock remembers
    sl2s(tmp_path, "generate", "plan.csv")
    assert "origins" in json.loads(
        (tmp_path / "services" / "sl2s.lock.json").read_text()
    )

    (tmp_path / "plan.csv").write_text(plan)
    sl2s(tmp_path, "rebalance", "plan.csv", "--allow-dirty")
    after = snapshot(tmp_path / "services")
    # the machine that lost its only step keeps its module (reported); everything else is as it was
    assert {k: v for k, v in after.items() if not k.startswith("auth/")} == before
