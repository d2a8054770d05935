"""The command line on a terminal and off it: colour only on a terminal (NO_COLOR and --no-color
turn it off), a progress display for work longer than a second, upper-case metavars, choices for
every --format, usage errors exit 2. The terminal is a real pseudo-terminal (pty)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sl2s.cli import app

ROOT = Path(__file__).resolve().parent.parent
LOGIN = ROOT / "sample_plans" / "login.csv"
ESC = b"\x1b["


def on_pty(args: list[str], cwd: Path, **env: str) -> tuple[int, bytes]:
    """Run `python -m sl2s ARGS` with stdin, stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    environment = {
        k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")
    }
    environment.update(env, TERM="xterm-256color", COLUMNS="100")
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=environment,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks)


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("term")
    done = subprocess.run(
        [sys.executable, "-m", "sl2s", "generate", str(LOGIN), "--out", "services"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return root


def test_run_on_a_terminal_is_coloured(services):
    code, out = on_pty(["-m", "sl2s", "run", "services", "feed"], services)
    assert code == 0, out
    assert ESC in out
    assert b"done (2 steps)" in re.sub(rb"\x1b\[[0-9;]*m", b"", out)


@pytest.mark.parametrize(
    "args, env",
    [
        (["-m", "sl2s", "run", "services", "feed"], {"NO_COLOR": "1"}),
        (["-m", "sl2s", "--no-color", "run", "services", "feed"], {}),
    ],
)
def test_no_color_and_the_option_turn_colour_off(services, args, env):
    code, out = on_pty(args, services, **env)
    assert code == 0, out
    assert ESC not in out
    assert b"flow 'feed' done (2 steps)" in out


def test_off_a_terminal_there_is_no_colour(services):
    done = subprocess.run(
        [sys.executable, "-m", "sl2s", "run", "services", "feed"],
        cwd=services,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert ESC not in done.stdout and ESC not in done.stderr
    assert done.stdout.startswith(b"client: Fetching feed information  (fetching_feed")


def test_errors_on_a_terminal_are_coloured_and_plain_under_no_color(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("login,Hello :x\n", encoding="utf-8")
    code, out = on_pty(["-m", "sl2s", "check", "bad.csv"], tmp_path)
    assert code == 1 and ESC in out and b"bad.csv:1:" in out
    code, out = on_pty(["-m", "sl2s", "check", "bad.csv"], tmp_path, NO_COLOR="1")
    assert code == 1 and ESC not in out and out.startswith(b"bad.csv:1: ")


PROGRESS = """
import sys, time
from sl2s.cli.app import working
with working("crunching"):
    time.sleep({seconds})
print("finished")
"""

COUNTED = """
import time
from sl2s.cli.app import working
with working("crunching") as update:
    for done in range(0, 101, 4):
        update(done, 100)
        time.sleep(0.08)
print("finished")
"""


def test_work_longer_than_a_second_shows_progress_on_a_terminal(tmp_path):
    code, out = on_pty(["-c", PROGRESS.format(seconds=2.5)], tmp_path)
    assert code == 0, out
    assert b"crunching" in out  # the bar (rich, on stderr), transient
    assert out.rstrip().endswith(b"finished")


def test_progress_with_a_total_shows_the_share_done(tmp_path):
    code, out = on_pty(["-c", COUNTED], tmp_path)
    assert code == 0, out
    shares = [int(n) for n in re.findall(rb"(\d+)%", out)]
    assert shares and all(0 < n <= 100 for n in shares), out
    assert shares == sorted(shares)  # it only goes forward
    assert b"left" in out  # the time left, once a total is known
    assert out.rstrip().endswith(b"finished")


def test_short_work_shows_no_progress(tmp_path):
    code, out = on_pty(["-c", PROGRESS.format(seconds=0.1)], tmp_path)
    assert code == 0 and b"crunching" not in out


def test_no_progress_off_a_terminal(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", PROGRESS.format(seconds=1.5)],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.stdout == b"finished\n" and done.stderr == b""


def test_generate_prints_a_summary_on_a_terminal_too(tmp_path):
    code, out = on_pty(
        ["-m", "sl2s", "--no-color", "generate", str(LOGIN), "--out", "s"], tmp_path
    )
    assert code == 0, out
    assert out.replace(b"\r\n", b"\n") == (
        b"s/: 12 created, 0 updated, 0 removed, 0 unchanged\n"
        b"8 new step stub(s) to fill in, in 4 file(s) (-v lists them)\n"
    )


# ---------------------------------------------------------------------------------------------
# usage lines, --format choices, exit 2


def _commands(group, prefix=()):
    import typer.main

    command = typer.main.get_command(group) if not prefix else group
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            yield from _commands(sub, (*prefix, name))
        else:
            yield (*prefix, name)


ALL = sorted(_commands(app))


def test_there_are_many_commands():
    assert ("run",) in ALL and ("incidents", "show") in ALL and len(ALL) > 25


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_help_names_values_in_upper_case_never_a_python_type(command):
    result = CliRunner().invoke(app, [*command, "-h"])
    assert result.exit_code == 0, result.output
    usage = result.output.splitlines()[0]
    assert usage.startswith("Usage: sl2s ")
    words = re.sub(
        r"\[[a-z|]+\]", "", result.output
    )  # choices are lower case: [text|markdown]
    for bad in ("<str>", "<path>", "<int>", "<float>", "<list", "{", "}"):
        assert bad not in words, (command, bad, result.output)
    # every argument and option value in the usage line is upper case
    for word in re.findall(r"[\[\s]([a-z_]+)[\]\.]", usage.split("[OPTIONS]", 1)[-1]):
        pytest.fail(f"lower-case metavar {word!r} in {usage!r}")


FORMATS = [
    ["show", str(LOGIN)],
    ["diff", str(LOGIN), str(LOGIN)],
    ["story", "logs"],
    ["patterns", str(LOGIN), "logs"],
]


@pytest.mark.parametrize("args", FORMATS, ids=lambda a: a[0])
def test_every_format_lists_its_choices_and_refuses_html_with_exit_2(args):
    result = CliRunner().invoke(app, [args[0], "-h"])
    assert re.search(r"--format \[[a-z]+(\|[a-z]+)+\]", result.output), result.output
    refused = CliRunner().invoke(app, [*args, "--format", "html"])
    assert refused.exit_code == 2, refused.output
    assert "'html' is not one of" in refused.output


@pytest.mark.parametrize(
    "args",
    [
        ["story", "logs", "--last", "--failed"],
        ["patterns", str(LOGIN)],
        ["patterns", str(LOGIN), "logs", "--prefix", "x"],
        ["incidents", "list", "logs", "--url", "http://127.0.0.1:9"],
        ["incidents", "errors", "logs", "--url", "http://127.0.0.1:9"],
        ["incidents", "show", "a", "b", "c"],
        ["incidents", "show", "logs", "id", "--url", "http://127.0.0.1:9"],
        ["console"],
        ["deploy", "services", "--target", "nomad"],
        ["run"],
        ["run", "services", "login", "bogus"],
        ["flows", "list", "services", "--state", "bogus"],
        ["flows", "list", "services", "--older-than", "5x"],
        ["flows", "prune", "services", "--older-than", "5x"],
        ["errors", "list", "--state", "bogus"],
        ["patterns", str(LOGIN), "logs", "--masks", "bogus"],
        ["patterns", str(LOGIN), "logs", "--similarity", "2"],
        ["patterns", str(LOGIN), "logs", "--depth", "99"],
        ["frobnicate"],
    ],
    ids=" ".join,
)
def test_usage_mistakes_exit_2(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Usage: sl2s" in result.output and "Traceback" not in result.output


def test_patterns_help_names_the_miners_defaults():
    """cli/observe.py writes the mining defaults out (to keep sl2s.observe out of start-up)."""
    from sl2s.cli.observe import MINING_DEFAULTS
    from sl2s.observe import mining

    assert MINING_DEFAULTS == {
        "similarity": str(mining.DEFAULT_SIMILARITY),
        "depth": str(mining.DEFAULT_DEPTH),
        "masks": ",".join(mining.DEFAULT_MASKS),
        "mask names": ", ".join(mining.NAMED_MASKS),
    }
