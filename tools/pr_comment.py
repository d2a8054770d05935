"""Post or update ONE pull-request comment with what a plan change means (the GitHub action's step).

    python tools/pr_comment.py --base BASE.csv --head PLAN.csv --plan PLAN.csv \
        --repo OWNER/NAME --pr NUMBER

The comment is `sl2s diff BASE HEAD --format markdown`, then the Mermaid diagram of each flow the
change touches (only those: a plan of many flows stays readable). It carries a hidden marker naming
the plan, so the next run for the same plan edits that comment instead of adding another. `--base`
may name a missing file: the plan is new in the pull request.

GitHub's REST API at $GITHUB_API_URL (default https://api.github.com) with $GITHUB_TOKEN. Exit 0
when the comment was written, 1 with a one-line message otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from sl2s import show
from sl2s.diagnostics import Sl2sError
from sl2s.plan import read_plan
from sl2s.plandiff import diff_plans
from sl2s.projection import project

LIMIT = 60_000  # GitHub refuses comments over 65,536 characters


def marker(plan: str) -> str:
    return f"<!-- sl2s-plan-diff {json.dumps(plan)} -->"


def body(base: Path | None, head: Path, plan: str) -> str:
    """The comment: the marker, `sl2s diff --format markdown`, diagrams of the changed flows."""
    new_plan = read_plan(head)
    if base is None:  # a new plan: every flow is new
        name = show.markdown_code(Path(plan).name)
        changes = (
            f"### New plan {name}\n\n{len(new_plan.flows)} flow(s), "
            f"{len(new_plan.steps)} step(s) on {len(new_plan.machines)} machine(s).\n"
        )
        changed = [f.name for f in new_plan.flows]
    else:
        done = subprocess.run(
            [sys.executable, "-c", "from sl2s.cli import main; main()"]
            + ["diff", str(base), str(head), "--format", "markdown"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 1):
            raise SystemExit(done.stderr.strip() or "sl2s diff failed")
        changes = done.stdout
        changed = [
            fd.flow
            for fd in diff_plans(read_plan(base), new_plan).flows
            if fd.status != "removed"
        ]
    parts = [marker(plan), changes.rstrip("\n"), ""]
    if changed:
        projection = project(new_plan)
        parts += ["#### Diagrams of the changed flows", ""]
        for flow in changed:
            diagram = show.mermaid_flow(projection, flow).rstrip("\n")
            section = [
                f"**Flow {show.markdown_code(flow)}**",
                "",
                "```mermaid",
                diagram,
            ]
            section += ["```", ""]
            if sum(map(len, parts + section)) > LIMIT:
                parts += ["(more diagrams left out: the comment would be too long)", ""]
                break
            parts += section
    return "\n".join(parts)


class GitHub:
    def __init__(self, api: str, token: str, repo: str) -> None:
        self.api = api.rstrip("/")
        self.token = token
        self.repo = repo

    def request(self, method: str, path: str, data: dict | None = None) -> object:
        req = urllib.request.Request(
            f"{self.api}{path}",
            method=method,
            data=None if data is None else json.dumps(data).encode("utf-8"),
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "sl2s-plan-diff",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def find(self, pr: int, mark: str) -> int | None:
        page = 1
        while True:
            comments = self.request(
                "GET",
                f"/repos/{self.repo}/issues/{pr}/comments?per_page=100&page={page}",
            )
            if not isinstance(comments, list):
                return None
            for comment in comments:
                if str(comment.get("body", "")).startswith(mark):
                    return int(comment["id"])
            if len(comments) < 100:
                return None
            page += 1

    def post(self, pr: int, text: str, mark: str) -> str:
        found = self.find(pr, mark)
        if found is None:
            self.request(
                "POST", f"/repos/{self.repo}/issues/{pr}/comments", {"body": text}
            )
            return "created"
        self.request(
            "PATCH", f"/repos/{self.repo}/issues/comments/{found}", {"body": text}
        )
        return f"updated (comment {found})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", required=True, help="the plan at the base commit")
    parser.add_argument("--head", required=True, help="the plan in the pull request")
    parser.add_argument(
        "--plan", required=True, help="the plan's path in the repository"
    )
    parser.add_argument("--repo", required=True, help="OWNER/NAME")
    parser.add_argument("--pr", required=True, type=int, help="pull request number")
    args = parser.parse_args(argv)
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        print("pr_comment: GITHUB_TOKEN is not set", file=sys.stderr)
        return 1
    base = Path(args.base)
    try:
        text = body(base if base.is_file() else None, Path(args.head), args.plan)
    except Sl2sError as error:
        print(f"pr_comment: {error}", file=sys.stderr)
        return 1
    github = GitHub(
        os.environ.get("GITHUB_API_URL", "https://api.github.com"), token, args.repo
    )
    try:
        what = github.post(args.pr, text, marker(args.plan))
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"pr_comment: GitHub API: {error}", file=sys.stderr)
        return 1
    print(f"pr_comment: plan diff comment on #{args.pr} {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
