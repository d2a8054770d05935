"""What a command imports: a no-op `sl2s generate` (nothing changed since the last run) and
`sl2s --help` import neither libcst nor black nor the runtime; a generate with work to do imports
black and jinja2, and libcst only when it must read a user module.
Each command runs in a fresh process, which reports the modules it ended with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGIN = ROOT / "sample_plans" / "login.csv"
HEAVY = ("libcst", "black", "sl2s.runtime", "jinja2")

REPORT = """
import sys
from sl2s.cli import main
heavy = sys.argv[1].split(",")
sys.argv = ["sl2s", *sys.argv[2:]]
try:
    main()
except SystemExit as done:
    code = done.code
else:
    code = 0
found = [h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules)]
print("IMPORTED", code, *found)
"""


def imported(cwd: Path, *args: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", REPORT, ",".join(HEAVY), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("IMPORTED"))
    _, code, *names = line.split()
    return int(code), set(names)


def test_a_no_op_generate_imports_neither_libcst_nor_black(tmp_path):
    code, first = imported(tmp_path, "generate", str(LOGIN))
    assert code == 0
    assert {"black", "jinja2"} <= first  # work to do: it renders and checks code
    assert "libcst" not in first  # it wrote the user modules, and read none
    code, again = imported(tmp_path, "generate", str(LOGIN))
    assert code == 0
    assert not again & set(HEAVY), again
    code, checked = imported(tmp_path, "generate", str(LOGIN), "--check")
    assert code == 0 and not checked & set(HEAVY), checked


def test_libcst_is_imported_when_a_user_module_must_be_read(tmp_path):
    assert imported(tmp_path, "generate", str(LOGIN))[0] == 0
    steps = tmp_path / "services" / "server" / "login.py"
    steps.write_text(steps.read_text() + "\n# edited\n")
    code, names = imported(tmp_path, "generate", str(LOGIN))
    assert code == 0 and "libcst" in names, names


def test_help_imports_none_of_them(tmp_path):
    code, names = imported(tmp_path, "--help")
    assert code == 0 and not names & set(HEAVY), names
