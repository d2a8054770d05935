"""The command examples of docs/ run as written: every `$ command` block of a docs page runs in a
fresh directory holding the files the examples name (sample_plans/, tests/data/), and its output
is compared with the page's (normalised as in the README's tour test, tests/test_readme_tour.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_readme_tour import Shell, check, fenced_blocks, transcript

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    p for p in (ROOT / "docs").glob("*.md") if "\n$ " in p.read_text(encoding="utf-8")
)


def test_some_pages_have_examples():
    assert ROOT / "docs" / "commands.md" in PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_example_of_the_page_prints_what_it_shows(page, tmp_path):
    (tmp_path / "sample_plans").symlink_to(ROOT / "sample_plans")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    shell = Shell(tmp_path)
    ran = 0
    try:
        for heading, _marker, block in fenced_blocks(page.read_text(encoding="utf-8")):
            if not block.startswith("$ "):
                continue
            for command, expected in transcript(block):
                check(shell, command, expected, f"{page.name}, {heading}")
                ran += 1
    finally:
        shell.close()
    assert ran
