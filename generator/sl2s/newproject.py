"""`sl2s init [DIR]`: a new project — a sample plan, its generated services, a `.gitignore` that
keeps sl2s's state (`.sl2s/` directories: logs, caches, indexes) out of git and the services in.

`project_files()` is the pure part (what to write); `create_project()` writes it without
overwriting anything and generates the services with `sl2s generate`'s own function.

It also writes a `.pre-commit-config.yaml` whose two hooks run the sl2s installed in the
project's environment (`language: system`, no download): the plan is valid, and the generated
services are up to date with it (docs/pull-requests.md has the hosted hooks and the GitHub action).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sl2s.diagnostics import Sl2sError

PLAN = "plan.csv"
SERVICES = "services"

SAMPLE_PLAN = """\
# The plan: one row per log line of a distributed process, and the machine that writes it.
# :name is a field shown in the log line; #name is a secret (travels only where it is used,
# written as *** everywhere). Change a row and run `sl2s generate plan.csv`; change a row's
# machine and run `sl2s rebalance plan.csv` to move its code. See the sl2s README.
Request\tLog\tMachine
login\tUser attempted login as :username and #password\tclient
login\tReceived request to login as :username\tserver
login\tTesting password for :username\tserver
login\tSetting session for :username\tserver
login\tFinish handling user login\tserver
login\tLogin successful\tclient
feed\tFetching feed information\tclient
feed\tRetrieving feed information\tserver
"""

GITIGNORE_LINES = (
    "# sl2s state: events, incidents, caches, console indexes (never commit them)",
    ".sl2s/",
    "# Python",
    "__pycache__/",
    "*.py[cod]",
    ".venv/",
    "# the generated services (services/) are committed: they are your code",
)


PRE_COMMIT = f"""\
# Checks before each commit (https://pre-commit.com): `pip install pre-commit`, then
# `pre-commit install`. Both hooks run the sl2s of this environment.
repos:
  - repo: local
    hooks:
      - id: sl2s-check
        name: sl2s check (the plan is valid)
        entry: sl2s check
        language: system
        files: ^{PLAN}$
      - id: sl2s-generate-check
        name: sl2s generate --check (the generated services are up to date)
        entry: python -m sl2s.precommit {SERVICES}
        language: system
        pass_filenames: false
        always_run: true
"""


def project_files() -> dict[str, str]:
    """The files of a new project besides its generated services, by path relative to it."""
    return {
        PLAN: SAMPLE_PLAN,
        ".gitignore": "\n".join(GITIGNORE_LINES) + "\n",
        ".pre-commit-config.yaml": PRE_COMMIT,
    }


def create_project(directory: Path, say: Callable[[str], None]) -> None:
    """Write a new project into `directory` (created if missing) and generate its services.
    Refuses, writing nothing, when the directory already holds any file it would write.
    """
    from sl2s.generate.command import run_generate

    if directory.exists() and not directory.is_dir():
        raise Sl2sError(f"{directory}: exists and is not a directory")
    files = project_files()
    taken = [name for name in (*files, SERVICES) if (directory / name).exists()]
    if taken:
        raise Sl2sError(
            f"{directory}: already has {', '.join(taken)}; sl2s init writes only a new project "
            "(nothing was written)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    lines: list[str] = []
    report = run_generate(
        directory / PLAN,
        directory / SERVICES,
        emit=lambda line: lines.append(line.text),
    )
    if report.exit_code:  # cannot happen with the sample plan; say what went wrong
        raise Sl2sError("\n".join(lines))
    shown = "." if str(directory) == "." else str(directory)
    say(
        f"created {shown}/: {PLAN} (a sample plan), .gitignore, .pre-commit-config.yaml, "
        f"{SERVICES}/ (generated)"
    )
    say("next:")
    if shown != ".":
        say(f"  cd {shown}")
    say(f"  sl2s run {SERVICES} login username=ann password=hunter2")
    say(
        f"  edit {SERVICES}/server/login.py (your steps), or {PLAN} then: sl2s generate {PLAN}"
    )
    say("  git init && git add . && git commit -m 'new sl2s project'")
