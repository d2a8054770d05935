"""A generated system refuses to be imported over a pending rebalance journal (a rebalance killed
after its commit point: the tree is half-moved), with one line naming the command that completes
it; after that command the import works and runs the rebalanced code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SL2S = str(Path(sys.executable).parent / "sl2s")

# Runs `sl2s rebalance`, killed (os._exit, like kill -9) while it replaces the second file.
KILLED_REBALANCE = """
import os, sys
from sl2s.rebalance import journal
placed = []
original = journal._place
def place(root, relative, data):
    placed.append(relative)
    if len(placed) == 2:
        os._exit(9)
    original(root, relative, data)
journal._place = place
from sl2s.cli import main
sys.argv = ["sl2s", "rebalance", "plan.csv", "--out", "services", "--allow-dirty"]
main()
"""

IMPORT = (
    "from services.client import login; "
    "print(login(username='ann', password='pw').get('session'))"
)


def run(cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, check=False
    )


def test_import_over_a_pending_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    plan = (ROOT / "sample_plans" / "login.csv").read_text()
    (tmp_path / "plan.csv").write_text(plan)
    assert run(tmp_path, SL2S, "generate", "plan.csv").returncode == 0
    server = tmp_path / "services" / "server" / "login.py"
    server.write_text(
        server.read_text().replace(
            "def setting_session_for_username(username: object) -> None:\n"
            "    # Not implemented yet: this step does nothing.\n"
            "    return None\n",
            "def setting_session_for_username(username: str) -> dict[str, str]:\n"
            '    return {"session": f"s-{username}"}\n',
        )
    )
    assert run(tmp_path, SL2S, "generate", "plan.csv").returncode == 0
    first = run(tmp_path, sys.executable, "-c", IMPORT)
    assert first.stdout == "s-ann\n", first.stderr

    # move the session step to a new machine; the rebalance dies half-way
    (tmp_path / "plan.csv").write_text(
        plan.replace(
            "Setting session for :username\tserver",
            "Setting session for :username\tsessions",
        )
    )
    killed = run(tmp_path, sys.executable, "-c", KILLED_REBALANCE)
    assert killed.returncode == 9
    assert (tmp_path / "services" / ".sl2s-journal.json").exists()

    refused = run(tmp_path, sys.executable, "-c", IMPORT)
    assert refused.returncode == 1
    command = "sl2s generate plan.csv --out services --check"
    assert refused.stderr.splitlines()[-1] == (
        "ImportError: services: a rebalance was interrupted and is not finished "
        "(.sl2s-journal.json); refusing to import the half-moved tree: run "
        f"`{command}` to complete it"
    )
    assert (tmp_path / "services" / ".sl2s-journal.json").exists()  # untouched

    done = run(tmp_path, SL2S, *command.split()[1:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stderr
    assert not (tmp_path / "services" / ".sl2s-journal.json").exists()
    assert (
        "setting_session_for_username"
        in (tmp_path / "services" / "sessions" / "login.py").read_text()
    )
    after = run(tmp_path, sys.executable, "-c", IMPORT)
    assert after.stdout == "s-ann\n", after.stderr
