"""A small generated tree whose server step logs, keeps local variables and fails on demand.

Shared by the tests of error groups, crash details, deploys and `sl2s watch`. Flow `job`:
client -> server -> client; the server's step takes the secret `token` and

- logs `working on <job>` at INFO;
- for `job=empty…` picks from an empty list (the IndexError is raised inside random.py);
- for `job=perm…` raises PermissionError itself;
- otherwise returns `{"done_by": "server"}`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLAN = """request,log,machine
job,Client sends :job with #token,client
job,Server works on :job,server
job,Client got :job back,client
"""

SERVER_STEPS = '''"""Steps of flow 'job' that run on machine 'server' (test behaviour)."""

import hashlib
import logging
import random

from sl2s.runtime import step


@step("job", "Server works on :job")
def server_works_on_job(job, token):
    logging.getLogger("jobs").info("working on %s", job)
    attempts = 3
    digest = hashlib.sha256(job.encode()).hexdigest()[:12]
    note = "token is " + token
    if job.startswith("empty"):
        return {"pick": random.choice([])}
    if job.startswith("perm"):
        raise PermissionError(f"no access to {job}")
    return {"done_by": "server", "attempts": attempts, "digest": digest, "n": len(note)}
'''

SL2S = [sys.executable, "-c", "from sl2s.cli import main; main()"]


def sl2s(*args: str, env: dict | None = None, cwd=None, timeout: float = 60):
    return subprocess.run(
        [*SL2S, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(extra)
    return env


def make_tree(base: Path, name: str = "svc_job") -> Path:
    """Generate the tree under `base`, fill in the server's step, regenerate (the secret now
    travels to the server); return the tree's directory."""
    (base / "job.csv").write_text(PLAN, encoding="utf-8")
    out = base / name
    done = sl2s("generate", str(base / "job.csv"), "--out", str(out), env=clean_env())
    assert done.returncode == 0, done.stderr
    (out / "server" / "job.py").write_text(SERVER_STEPS, encoding="utf-8")
    done = sl2s("generate", str(base / "job.csv"), "--out", str(out), env=clean_env())
    assert done.returncode == 0, done.stderr
    return out


def run_job(tree: Path, job: str, token: str = "tok-s3cr3t-42", **env: str):
    """`sl2s run TREE job job=… token=…` in a child process (its own recorder)."""
    return sl2s(
        "run",
        str(tree),
        "job",
        f"job={job}",
        f"token={token}",
        env=clean_env(**env),
    )


def run_child(cwd: Path, body: str, **env: str) -> str:
    script = "import sys\nsys.path.insert(0, '.')\n" + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
