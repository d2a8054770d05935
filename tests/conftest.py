"""Shared test options and fixtures.

Golden files: `pytest --update-goldens` rewrites every expected output under tests/goldens/ from the
current code instead of comparing. Read the diff (`git diff tests/goldens`) before committing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# bench/synthetic.py: synthetic events in the documented format, shared by tests and benchmarks
# (not part of the package: nothing in it uses them)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from pg import pg_cluster, pg_url  # noqa: F401  (fixtures: a throw-away PostgreSQL)
from relay_flows import relay  # noqa: F401  (fixture: the relay system)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PLANS = ROOT / "sample_plans"
GOLDENS = Path(__file__).resolve().parent / "goldens"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="Rewrite the golden files under tests/goldens/ instead of comparing against them.",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture
def golden(update_goldens: bool):
    """`golden(relative_path, actual_text)`: compare with tests/goldens/<path>, or rewrite it."""

    def check(relative: str, actual: str) -> None:
        path = GOLDENS / relative
        if update_goldens:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8", newline="")
            return
        assert path.exists(), f"missing golden {relative}; run pytest --update-goldens"
        expected = path.read_text(encoding="utf-8")
        assert (
            actual == expected
        ), f"{relative} differs from its golden (pytest --update-goldens)"

    return check
