"""README.md's tour is a test: every command block of "A tour" runs, as written, in a fresh
directory, one block after another (the tour builds one project), and what each command prints is
compared with what the page shows — after normalising what differs from run to run: times,
durations, ids, ports, pids, the reader's directory (`/home/you`) and host name (`laptop`). A `...`
line on the page stands for any number of lines.

Other blocks are marked in the README itself (`<!-- tour: write PATH -->`: the reader puts that
file in place; `<!-- tour: shown in PATH -->`: an excerpt of a generated file, checked to be in it)
or listed below: a listing that is not a command, and the blocks that need long-running servers
(`sl2s up`, the console), each covered by the named tests that run those commands for real.
A block of none of these kinds fails the test, so a new block cannot go unchecked.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

NOT_COMMANDS = {"services/"}  # first line of a block that shows a listing, not commands
COVERED_ELSEWHERE = {  # first line of a block -> the tests that run its commands for real
    "$ sl2s up services &": [
        "tests/test_cli_up_trees.py::test_up_serves_it_and_incidents_url_uses_the_key_up_wrote",
        "tests/test_http_system.py::test_run_remote_tells_the_whole_story_across_machines",
    ],
    "$ sl2s run services login username=ann password=hunter2 --remote &": [
        "tests/test_up_supervise.py::"
        "test_a_flow_whose_machine_is_killed_mid_step_finishes_after_the_restart",
    ],
    "$ sl2s console services/.sl2s/logs &": [  # a fixed port (8700): not on a shared machine
        "tests/test_console_web.py::test_the_command_prints_its_address_and_serves_until_stopped",
        "tests/test_story_links.py",
    ],
}
WAIT = 20.0  # seconds a background command may take to print what the page shows


def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """(heading, marker comment or "", block text) of every fenced block of a Markdown text."""
    found = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line
        if line.startswith("```"):
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            before = lines[i - 1] if i else ""
            marker = before if before.startswith("<!-- tour:") else ""
            found.append((heading, marker, "\n".join(lines[i + 1 : j]) + "\n"))
            i = j
        i += 1
    return found


def tour_blocks() -> list[tuple[str, str, str]]:
    """The fenced blocks of README.md's tour."""
    text = README.read_text(encoding="utf-8")
    return fenced_blocks(
        text[text.index("\n## A tour\n") : text.index("\n## Commands\n")]
    )


def transcript(block: str) -> list[tuple[str, list[str]]]:
    """[(command, expected output lines)] of a block of `$ command` lines and their output."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    for _command, expected in steps:
        while expected and not expected[-1].strip():
            expected.pop()
    return steps


# ---------------------------------------------------------------------------------------------
# normalising


RULES = [
    (re.compile(r"incident-\d{8}T\d{6}\.\d+Z-[0-9a-f]+"), "incident-<ID>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<TIME>"),
    (re.compile(r"#\d{20,}"), "#<EVENT>"),
    (re.compile(r"/event/\d{20,}"), "/event/<EVENT>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<REVISION>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<CORRELATION>"),
    (re.compile(r"\b[0-9a-f]{16}\b"), "<FINGERPRINT>"),
    (re.compile(r"\+\d+(?:\.\d+)? (?:ms|s|µs)"), "+<DURATION>"),
    (re.compile(r"\bin \d+(?:\.\d+)? s\b"), "in <SECONDS> s"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<PORT>"),
    (re.compile(r"\bpid \d+"), "pid <PID>"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(text: str, home: Path | None = None) -> list[str]:
    if (
        home is not None
    ):  # what the reader's shell shows as /home/you, and the host name
        for shown in {str(home), os.path.realpath(home)}:
            text = text.replace(shown, "/home/you")
        text = re.sub(rf"\b{re.escape(socket.gethostname())}\b", "laptop", text)
    text = text.replace("\r\n", "\n")
    for pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    lines = [line.rstrip() for line in text.split("\n")]
    # Python >= 3.11 marks the failing expression under a traceback line: the page does not
    lines = [line for line in lines if not re.fullmatch(r"\s*[\^~]+\s*", line)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected `...` line stands for any number of lines."""
    parts = []
    for line in expected:
        parts.append(
            r"(?:[^\n]*\n)*?" if line.strip() == "..." else re.escape(line) + r"\n"
        )
    return (
        re.fullmatch("".join(parts), "".join(line + "\n" for line in actual))
        is not None
    )


# ---------------------------------------------------------------------------------------------
# running


class Shell:
    """The reader's shell: a working directory, `cd`, background jobs (`&`, `kill %N`)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cwd = home
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SL2S_", "GIT_"))
            and k not in ("NO_COLOR", "PYTHONPATH")
        }
        self.env["PATH"] = (
            os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        )
        self.env.update(
            GIT_AUTHOR_NAME="You",
            GIT_AUTHOR_EMAIL="you@example.com",
            GIT_COMMITTER_NAME="You",
            GIT_COMMITTER_EMAIL="you@example.com",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_CONFIG_NOSYSTEM="1",
        )
        self.jobs: list[tuple[subprocess.Popen, Path]] = []
        self.seen: dict[int, int] = (
            {}
        )  # job -> characters of its output already compared

    def run(self, command: str) -> str:
        if command.startswith("cd "):
            self.cwd = (self.cwd / command[3:].strip()).resolve()
            return ""
        if re.fullmatch(
            r"export [A-Z_0-9]+=\S+", command
        ):  # lasts, as in the reader's shell
            name, _, value = command[len("export ") :].partition("=")
            self.env[name] = value
            return ""
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        return done.stdout

    def start(self, command: str) -> int:
        out = self.home / f".job{len(self.jobs) + 1}.out"
        with out.open("w") as sink:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.cwd,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.jobs.append((proc, out))
        return len(self.jobs)

    def news(self) -> str:
        """What background jobs printed since last asked."""
        text = ""
        for number, (_proc, out) in enumerate(self.jobs, 1):
            data = out.read_text(encoding="utf-8", errors="replace")
            text += data[self.seen.get(number, 0) :]
            self.seen[number] = len(data)
        return text

    def kill(self, number: int) -> None:
        proc, _out = self.jobs[number - 1]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for number in range(1, len(self.jobs) + 1):
            self.kill(number)


def check(shell: Shell, command: str, expected: list[str], where: str) -> None:
    want = normalise("\n".join(expected))
    background = command.endswith(" &")
    if background:
        shell.start(command[:-2])
        output = ""
    elif re.fullmatch(r"kill %\d+", command):
        shell.kill(int(command[6:]))
        output = ""
    else:
        output = shell.run(command)
    deadline = time.monotonic() + (WAIT if shell.jobs else 0)
    while True:  # background jobs print in their own time: wait for what the page shows
        output += shell.news()
        got = normalise(output, shell.home)
        if matches(want, got) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    assert matches(want, got), (
        f"{where}: `$ {command}` printed\n"
        + "\n".join(got)
        + "\n\nthe page shows\n"
        + "\n".join(want)
    )


def test_every_block_of_the_tour_is_run_or_accounted_for(tmp_path):
    home = tmp_path / "you"
    home.mkdir()
    shell = Shell(home)
    ran = 0
    try:
        for heading, marker, block in tour_blocks():
            first = block.splitlines()[0] if block.strip() else ""
            where = f"README.md, {heading}"
            if marker.startswith("<!-- tour: write "):
                path = marker[len("<!-- tour: write ") : -len(" -->")]
                (shell.cwd / path).write_text(block, encoding="utf-8")
            elif marker.startswith("<!-- tour: shown in "):
                path = marker[len("<!-- tour: shown in ") : -len(" -->")]
                assert block in (shell.cwd / path).read_text(encoding="utf-8"), (
                    where,
                    path,
                )
            elif first in COVERED_ELSEWHERE:
                for test in COVERED_ELSEWHERE[first]:
                    file, _, name = test.partition("::")
                    source = (ROOT / file).read_text(encoding="utf-8")
                    assert not name or f"def {name}(" in source, test
            elif first in NOT_COMMANDS:
                continue
            elif first.startswith("$ "):
                for command, expected in transcript(block):
                    check(shell, command, expected, where)
                    ran += 1
            else:
                pytest.fail(
                    f"{where}: a block the tour test neither runs nor accounts for:\n{block}"
                )
    finally:
        shell.close()
    assert ran >= 20


def test_the_normalising_keeps_what_matters():
    page = normalise(
        "flow 'login' done (6 steps)  at 127.0.0.1:45249 pid 16681 +0.8 ms"
    )
    assert page == [
        "flow 'login' done (6 steps) at 127.0.0.1:<PORT> pid <PID> +<DURATION>"
    ]
    assert normalise("done (5 steps)") != normalise("done (6 steps)")
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a", "b"], ["a", "b", "c"])
