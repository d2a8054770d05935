"""The wheel ships every package of the source tree: pyproject.toml lists them one by one (the
templates live outside generator/), so a new subpackage that is not listed would be missing from
a non-editable install while every test of an editable one still passed."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_source_tree_is_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    source = ROOT / "generator"
    found = {
        ".".join(init.parent.relative_to(source).parts)
        for init in source.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    found.add("sl2s.templates")
    assert listed == found
