"""The slim runtime distribution, `sl2s-runtime` (docs/deploy.md, "The image"): its module list is
exactly what the runtime imports, it installs none of the generator's dependencies, and the
Dockerfile of docs/deploy.md builds a machine that serves a generated system.

No container engine runs here, so the Dockerfile's steps run in a temporary directory standing for
the image's file system: its `COPY` lines copy into it, its `RUN` lines run with their absolute
paths moved into it, and its `CMD` serves a machine (on 127.0.0.1 with a hop key, not 0.0.0.0).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import typer.main
from test_layers import PACKAGE_DIR, import_graph, module_names

from sl2s.cli import app
from sl2s.runtime.cli import parser as runtime_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import loopback_socket, read_events, stop, wait_healthy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "generator"
RUNTIME = ROOT / "packaging" / "sl2s-runtime" / "pyproject.toml"
GENERATOR_ONLY = ["jinja2", "typer", "libcst", "black", "drain3", "rich"]
SIZE_LIMIT = 20_000_000  # bytes of site-packages, pip and setuptools not counted
KEY = "runtime-dist-key-" + "0123456789abcdef" * 2


def runtime_config() -> dict:
    return tomllib.loads(RUNTIME.read_text(encoding="utf-8"))


def source_modules() -> dict[str, Path]:
    return module_names(PACKAGE_DIR)


def third_party(path: Path) -> set[str]:
    """The top-level names of the modules outside sl2s that `path` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"sl2s"}


def closure(roots: list[str]) -> tuple[set[str], set[str]]:
    """The sl2s modules reachable from `roots` by imports (tests/test_layers.py's graph), with the
    packages Python runs first to import them, and the other top-level modules they import.
    """
    modules = source_modules()
    graph = import_graph()
    ours: set[str] = set()
    others: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        ours.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(graph[name])
        others |= third_party(modules[name])
    return ours, others


def listed_modules(config: dict) -> set[str]:
    """The modules the runtime's wheel holds, as its pyproject.toml lists them."""
    setup = config["tool"]["setuptools"]
    modules = source_modules()
    found = {
        m for m in modules for p in setup["packages"] if m == p or m.startswith(p + ".")
    }
    for single in setup["py-modules"]:
        parts = single.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


def test_the_runtime_wheel_holds_exactly_what_the_runtime_imports():
    runtime = [
        m
        for m in source_modules()
        if m == "sl2s.runtime" or m.startswith("sl2s.runtime.")
    ]
    needed, _ = closure(["sl2s.api", *runtime])
    assert listed_modules(runtime_config()) == needed


def test_the_runtime_imports_nothing_of_the_generators_dependencies():
    runtime = [
        m
        for m in source_modules()
        if m == "sl2s.runtime" or m.startswith("sl2s.runtime.")
    ]
    _, others = closure(["sl2s.api", *runtime])
    third_party = others - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {
        "orjson",
        "starlette",
        "uvicorn",
        "tomli",
        "psycopg",
        "opentelemetry",
    }
    config = runtime_config()["project"]
    required = {re.split(r"[<>=\[;]", d)[0] for d in config["dependencies"]}
    optional = {
        re.split(r"[<>=\[;]", d)[0]
        for ds in config["optional-dependencies"].values()
        for d in ds
    }
    assert required == {"orjson", "starlette", "uvicorn", "tomli"}
    assert optional == {"psycopg", "opentelemetry-sdk"}


def test_both_distributions_ask_for_the_same_versions_of_what_they_share():
    full = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]
    runtime = runtime_config()["project"]
    assert runtime["version"] == full["version"]
    assert set(runtime["dependencies"]) <= set(full["dependencies"])
    for extra, requirements in runtime["optional-dependencies"].items():
        assert requirements == full["optional-dependencies"][extra]


def test_the_runtime_serve_command_takes_the_full_commands_arguments():
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    full = {}
    for param in command.params:
        if param.name == "help":
            continue
        flag = param.opts[0] if param.opts[0].startswith("-") else param.name
        full[flag] = param.default
    serve = runtime_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    slim = {}
    for action in serve._actions:
        if action.dest == "help":
            continue
        slim[action.option_strings[0] if action.option_strings else action.dest] = (
            action.default
        )
    assert slim == full


# -- the Dockerfile of docs/deploy.md, run without a container engine ---------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile block of docs/deploy.md as (instruction, arguments), continuations joined."""
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```dockerfile\n(.*?)```", page, re.S)
    assert len(blocks) == 1, "docs/deploy.md should show one Dockerfile"
    text = re.sub(r"\\\n", " ", blocks[0])
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction, arguments.strip()))
    return found


class Image:
    """A directory standing for the image's file system: absolute paths of the Dockerfile's
    steps are moved into it."""

    def __init__(self, root: Path, services: Path) -> None:
        self.root = root
        self.services = services
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SL2S_", "VIRTUAL_ENV"))
        }
        self.workdir = root

    def path(self, text: str) -> str:
        return re.sub(r"(?<![\w./$-])/(?=(src|opt|app|var)\b)", f"{self.root}/", text)

    def copy(self, arguments: str) -> None:
        words = shlex.split(arguments)
        source_context = None
        if words[0].startswith("--from="):
            source_context = words.pop(0).removeprefix("--from=")
        source, destination = words
        target = Path(self.path(destination))
        if source_context == "sl2s":
            origin = ROOT / source
        elif source_context is not None:  # an earlier stage: the same file system here
            assert self.path(source) == str(target), (source, destination)
            return
        else:
            assert source == "services", source
            origin = self.services
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)

    def run(self, command: str) -> None:
        for part in command.split(" && "):
            words = shlex.split(self.path(part))
            if words[0] in ("useradd", "chown"):  # need root: checked, not run
                continue
            if words[0] == "python":
                words[0] = sys.executable
            elif words[0] == "pip":
                words[:1] = [sys.executable, "-m", "pip"]
            done = subprocess.run(
                words,
                env=self.env,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"RUN {part}\n{done.stdout}\n{done.stderr}"

    def set_env(self, arguments: str) -> None:
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            value = value.replace("$PATH", self.env.get("PATH", ""))
            self.env[name] = self.path(value)


def build(image: Image) -> tuple[list[str], str]:
    """Run the Dockerfile's steps; returns its CMD and its final USER."""
    steps = dockerfile()
    stages = [arguments for instruction, arguments in steps if instruction == "FROM"]
    assert len(stages) == 2 and all(s.startswith("python:3") for s in stages), stages
    command: list[str] = []
    user = "root"
    for instruction, arguments in steps:
        if instruction == "COPY":
            image.copy(arguments)
        elif instruction == "RUN":
            image.run(arguments)
        elif instruction == "ENV":
            image.set_env(arguments)
        elif instruction == "WORKDIR":
            image.workdir = Path(image.path(arguments))
        elif instruction == "USER":
            user = arguments
        elif instruction == "CMD":
            command = orjson.loads(arguments)
        else:
            assert instruction in ("FROM", "EXPOSE"), instruction
    return command, user


def installed_size(site_packages: Path) -> int:
    tools = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel")
    return sum(
        f.stat().st_size
        for top in site_packages.iterdir()
        if top.name.split("-")[0] not in tools
        for f in ([top] if top.is_file() else top.rglob("*"))
        if f.is_file()
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Image, list[str], str]:
    work = tmp_path_factory.mktemp("image")
    services = work / "project" / "services"
    plan = ROOT / "sample_plans" / "login.csv"
    done = subprocess.run(
        [sys.executable, "-m", "sl2s", "generate", str(plan), "--out", str(services)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    built = Image(work / "root", services)
    command, user = build(built)
    return built, command, user


def test_the_image_runs_as_a_user_that_is_not_root(image):
    _, _, user = image
    assert user not in ("root", "0", "")
    assert any(
        instruction == "RUN"
        and f"useradd --system --no-create-home --uid 10001 {user}" in text
        for instruction, text in dockerfile()
    )


def test_the_image_holds_the_runtime_and_none_of_the_generator(image):
    built, _, _ = image
    (site_packages,) = (built.root / "opt" / "venv" / "lib").glob(
        "python3*/site-packages"
    )
    names = {p.name.split("-")[0].lower() for p in site_packages.glob("*.dist-info")}
    assert "sl2s_runtime" in names and "sl2s" not in names
    assert not names & set(GENERATOR_ONLY), names & set(GENERATOR_ONLY)
    assert not (site_packages / "pip").exists()  # the venv was made without it
    assert installed_size(site_packages) <= SIZE_LIMIT, installed_size(site_packages)
    # only what the runtime imports, byte for byte the repository's files
    shipped = {
        p.relative_to(site_packages) for p in (site_packages / "sl2s").rglob("*.py")
    }
    for relative in shipped:
        assert (site_packages / relative).read_bytes() == (
            SOURCE / relative
        ).read_bytes()
    assert not (site_packages / "sl2s" / "generate").exists()
    assert not (site_packages / "sl2s" / "cli").exists()


def test_the_runtime_command_names_the_full_tool_for_other_commands(image):
    built, _, _ = image
    sl2s = built.root / "opt" / "venv" / "bin" / "sl2s"
    done = subprocess.run(
        [str(sl2s), "generate", "plan.csv"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "sl2s-runtime" in done.stderr and "install the full sl2s" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [str(sl2s), "serve"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "DIR" in done.stderr
    done = subprocess.run(
        [str(sl2s), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "runtime" in done.stdout


def test_the_image_serves_a_machine_that_a_flow_hops_to(image):
    built, command, _ = image
    assert command[:4] == ["sl2s", "serve", "services", "server"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    env = dict(built.env, SL2S_HOP_KEY=KEY)
    sock = loopback_socket()
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # the image's command, on a socket bound to loopback here instead of 0.0.0.0:8000
    served = [
        shutil.which(command[0], path=env["PATH"]),
        *command[1:4],
        "--fd",
        str(sock.fileno()),
    ]
    assert served[0] == str(built.root / "opt" / "venv" / "bin" / "sl2s")
    proc = subprocess.Popen(
        served,
        env=env,
        cwd=built.workdir,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sock.close()
    try:
        wait_healthy(url, proc)
        python = built.root / "opt" / "venv" / "bin" / "python"
        caller = subprocess.run(
            [
                str(python),
                "-c",
                "from services.client import login; "
                "login(username='ann', password='hunter2'); print('ok')",
            ],
            env=dict(env, SL2S_TRANSPORT="http", SL2S_URL_SERVER=url),
            cwd=built.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert caller.returncode == 0, caller.stderr
        assert caller.stdout.strip().endswith("ok")
    finally:
        # uvicorn stops gracefully on SIGTERM, then ends by the signal it caught, as the full
        # `sl2s serve` does
        assert stop(proc) in (0, -signal.SIGTERM), (
            proc.stderr.read() if proc.stderr else ""
        )
    events = read_events(Path(env["SL2S_LOG_DIR"]))
    server_steps = [
        e
        for e in events
        if e["event_name"] == "sl2s.step"
        and e["attributes"]["sl2s.machine"] == "server"
    ]
    assert len(server_steps) == 4
    assert "hunter2" not in "".join(
        p.read_text(errors="replace")
        for p in Path(env["SL2S_LOG_DIR"]).rglob("*")
        if p.is_file()
    )
