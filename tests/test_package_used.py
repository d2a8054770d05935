"""The wheel ships only what the package uses: every module of `sl2s` is imported by another of its
modules, or is a package, a command's entry (`sl2s.__main__`, the console scripts of sl2s and of
sl2s-runtime), a built-in transport (imported by name, sl2s.runtime.core.hop.BUILT_IN), imported
by generated code (the templates) or run by the pre-commit hooks (`python -m …` in
.pre-commit-hooks.yaml). A helper only tests or benchmarks use lives in tests/ or bench/ (as
bench/synthetic.py does)."""

from __future__ import annotations

import sys
from pathlib import Path

from test_layers import PACKAGE_DIR, import_graph

from sl2s.runtime.core.hop import BUILT_IN

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = [
    ROOT / "pyproject.toml",
    ROOT / "packaging" / "sl2s-runtime" / "pyproject.toml",
]


def console_scripts() -> set[str]:
    """The modules the distributions' console scripts start in."""
    return {
        target.partition(":")[0]
        for path in DISTRIBUTIONS
        for target in tomllib.loads(path.read_text())["project"]["scripts"].values()
    }


def test_every_module_is_used_by_the_package():
    graph = import_graph()
    imported = set().union(*graph.values())
    packages = {
        name
        for name in graph
        if (PACKAGE_DIR.joinpath(*name.split(".")[1:]) / "__init__.py").is_file()
    }
    allowed = {"sl2s.__main__", *console_scripts()}
    allowed |= {f"sl2s.runtime.transport.{t}" for t in BUILT_IN}
    templates = "".join(p.read_text() for p in (ROOT / "templates").glob("*.j2"))
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    allowed |= {
        name
        for name in graph
        if f"from {name} import" in templates or f"-m {name}" in hooks
    }
    unused = sorted(set(graph) - imported - packages - allowed)
    assert (
        not unused
    ), f"modules nothing in sl2s imports (move them to tests/ or bench/): {unused}"
    assert "sl2s.observe.synthetic" not in graph
