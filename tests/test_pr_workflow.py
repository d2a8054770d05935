"""The pull-request workflow for users: the pre-commit hooks (run with the real
`pre-commit try-repo`) and the GitHub action's comment script (against a local HTTP server
standing in for GitHub's REST API: the comment is created once, then updated in place).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PLANDIFF = ROOT / "tests" / "data" / "plandiff"
SCRIPT = ROOT / "tools" / "pr_comment.py"
TOKEN = "ghs_test-token-123"


# --- a stand-in for GitHub's REST API on 127.0.0.1 -----------------------------------------------


class FakeGitHub:
    """Issue comments of one repository, as GitHub's REST API serves them (the parts used)."""

    def __init__(self) -> None:
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, authorization)
        self.next_id = 1000
        self.lock = threading.Lock()

    def add(self, pr: int, body: str) -> int:
        with self.lock:
            self.next_id += 1
            self.comments.setdefault(pr, []).append({"id": self.next_id, "body": body})
            return self.next_id

    def handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, data: object) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length", "0"))
                data = json.loads(self.rfile.read(length))
                assert isinstance(data, dict)
                return data

            def route(self, method: str) -> None:
                api.requests.append(
                    (method, self.path, self.headers.get("Authorization", ""))
                )
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.reply(401, {"message": "Bad credentials"})
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                # /repos/o/r/issues/N/comments
                if len(parts) == 6 and parts[3] == "issues" and parts[5] == "comments":
                    pr = int(parts[4])
                    if method == "GET":
                        params = dict(p.split("=") for p in query.split("&") if p)
                        size, page = int(params["per_page"]), int(params["page"])
                        items = api.comments.get(pr, [])
                        return self.reply(200, items[(page - 1) * size : page * size])
                    if method == "POST":
                        new = api.add(pr, self.body()["body"])
                        return self.reply(201, {"id": new})
                # /repos/o/r/issues/comments/ID
                if len(parts) == 6 and parts[4] == "comments" and method == "PATCH":
                    wanted = int(parts[5])
                    for items in api.comments.values():
                        for comment in items:
                            if comment["id"] == wanted:
                                comment["body"] = self.body()["body"]
                                return self.reply(200, comment)
                return self.reply(404, {"message": "Not Found"})

            def do_GET(self) -> None:
                self.route("GET")

            def do_POST(self) -> None:
                self.route("POST")

            def do_PATCH(self) -> None:
                self.route("PATCH")

        return Handler


@pytest.fixture()
def github() -> Iterator[tuple[FakeGitHub, str]]:
    api = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def comment(
    url: str, base: Path, head: Path, pr: int = 7
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--base", str(base), "--head", str(head)]
        + ["--plan", "plans/shop.csv", "--repo", "acme/shop", "--pr", str(pr)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_comment_is_created_once_then_updated_in_place(
    github: tuple[FakeGitHub, str], tmp_path: Path
) -> None:
    api, url = github
    for n in range(120):  # other people's comments, over more than one page
        api.add(7, f"looks good {n}")
    base = ROOT / "sample_plans" / "shop.csv"
    head = tmp_path / "shop.csv"
    # one flow of four changes: a step of order_status moves to another machine
    head.write_text(
        base.read_text().replace(
            "Order :order_id is :status;web", "Order :order_id is :status;inventory"
        )
    )
    done = comment(url, base, head)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pr_comment: plan diff comment on #7 created"
    ours = [c for c in api.comments[7] if c["body"].startswith("<!-- sl2s-plan-diff")]
    assert len(ours) == 1
    body = ours[0]["body"]
    diff = subprocess.run(
        [str(BIN / "sl2s"), "diff", str(base), str(head), "--format", "markdown"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert diff.rstrip("\n") in body  # exactly what `sl2s diff --format markdown` says
    assert "step moved `Order :order_id is :status` from `web` to `inventory`" in diff
    # the diagram of the changed flow only
    assert body.count("```mermaid") == 1
    assert "**Flow `order_status`**\n\n```mermaid\nsequenceDiagram" in body
    assert "participant m_inventory as inventory" in body

    # a new push changes another flow too: the same comment is edited, nothing is added
    head.write_text(head.read_text().replace("Refund :refund_id issued", "Refund sent"))
    again = comment(url, base, head)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        f"pr_comment: plan diff comment on #7 updated (comment {ours[0]['id']})"
    )
    after = [c for c in api.comments[7] if c["body"].startswith("<!-- sl2s-plan-diff")]
    assert [c["id"] for c in after] == [ours[0]["id"]] and len(api.comments[7]) == 121
    assert after[0]["body"].count("```mermaid") == 2
    assert "**Flow `refund`**" in after[0]["body"]
    methods = [m for m, _, _ in api.requests]
    assert methods.count("POST") == 1 and methods.count("PATCH") == 1
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in api.requests)
    # a plan new in the pull request: every flow is shown, on another pull request
    fresh = comment(url, tmp_path / "missing.csv", PLANDIFF / "login.new.csv", pr=8)
    assert fresh.returncode == 0, fresh.stderr
    assert api.comments[8][0]["body"].count("```mermaid") == 3
    assert "### New plan `shop.csv`" in api.comments[8][0]["body"]


def test_a_github_error_is_one_line_and_exit_1(
    github: tuple[FakeGitHub, str],
) -> None:
    _, url = github
    env = {**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": "wrong"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--base", str(PLANDIFF / "shop.old.csv")]
        + ["--head", str(PLANDIFF / "shop.new.csv"), "--plan", "p.csv"]
        + ["--repo", "a/b", "--pr", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == "pr_comment: GitHub API: HTTP Error 401: Unauthorized\n"


def test_the_action_runs_generate_check_and_the_comment_script() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"plan", "out", "github-token"}
    steps = action["runs"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert 'sl2s generate "$PLAN" --out "$OUT" --check' in runs
    assert '"$GITHUB_ACTION_PATH/tools/pr_comment.py"' in runs
    assert SCRIPT.is_file()
    assert steps[-1]["if"].startswith(
        "always()"
    )  # the comment also when the check fails


# --- pre-commit --------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def hooks_repo(tmp: Path) -> Path:
    """This project as a git repository (what `rev:` would fetch), from the files a clone has."""
    repo = tmp / "sl2s-hooks"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "build", "dist", "services", ".mypy_cache", ".ruff_cache", "node_modules",
    )  # fmt: skip
    shutil.copytree(ROOT, repo, ignore=ignore)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sl2s")
    return repo


def pre_commit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(cwd.parent / "pre-commit-home")}
    return subprocess.run(
        [str(BIN / "pre-commit"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_pre_commit_hooks_with_the_real_pre_commit(tmp_path: Path) -> None:
    hooks = hooks_repo(tmp_path)
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(ROOT / "sample_plans" / "login.csv", user / "plan.csv")
    done = subprocess.run(
        [str(BIN / "sl2s"), "generate", "plan.csv"], cwd=user, capture_output=True
    )
    assert done.returncode == 0
    git(user, "init", "-q")
    git(user, "add", "-A")
    git(user, "commit", "-qm", "plan and services")

    ok = pre_commit(user, "try-repo", str(hooks), "--all-files")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sl2s check (the plan is valid)" in ok.stdout
    assert "sl2s generate --check (generated code is up to date)" in ok.stdout
    assert ok.stdout.count("Passed") == 2

    # the plan changes without regenerating: the generated-code hook fails and says why
    plan = user / "plan.csv"
    plan.write_text(plan.read_text() + "feed\tShowing the feed\tclient\n")
    stale = pre_commit(
        user, "try-repo", str(hooks), "sl2s-generate-check", "--all-files"
    )
    assert stale.returncode == 1
    assert "stale: services/client/_wiring.py (update)" in stale.stdout
    # an invalid plan: the check hook fails with FILE:LINE
    plan.write_text(plan.read_text() + "feed\tBroken :x and :X\tclient\n")
    git(user, "add", "plan.csv")
    bad = pre_commit(user, "try-repo", str(hooks), "sl2s-check")
    assert bad.returncode == 1
    assert "plan.csv:" in bad.stdout
