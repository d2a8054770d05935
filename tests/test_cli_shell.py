"""The command line as a shell user meets it: `-h`, `python -m sl2s`, shell completion."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sl2s import __version__
from sl2s.cli import app


@pytest.mark.parametrize(
    "args", [["-h"], ["--help"], ["run", "-h"], ["flows", "list", "-h"]]
)
def test_h_is_help_everywhere(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


def test_python_m_sl2s_is_the_same_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "sl2s", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"sl2s {__version__}\n"


def test_bash_completion_script_completes_the_sl2s_command():
    """Typer detects the shell it runs under: run it from bash."""
    done = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' -m sl2s --show-completion"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "_SL2S_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _sl2s_completion sl2s" in done.stdout
