"""docs/runtime.md's configuration table lists every environment variable the code reads: every
`SL2S_*` (and `NO_COLOR`) name in the package's source, found from its syntax tree, has a row;
every row names a variable the code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sl2s

PACKAGE = Path(sl2s.__file__).resolve().parent
DOCS = Path(__file__).resolve().parent.parent / "docs" / "runtime.md"
NAME = re.compile(r"SL2S_[A-Z0-9_]*|NO_COLOR")


def read_by_the_code() -> dict[str, set[str]]:
    """Variable name -> modules whose source holds it as a string ("SL2S_URL_" is the prefix of
    SL2S_URL_<MACHINE>)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if NAME.fullmatch(node.value):
                    name = (
                        node.value + "<MACHINE>"
                        if node.value.endswith("_")
                        else node.value
                    )
                    found.setdefault(name, set()).add(
                        path.relative_to(PACKAGE).as_posix()
                    )
    return found


def documented() -> set[str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 3)]
    return set(re.findall(r"^\| `([A-Z0-9_<>]+)` \|", section, re.M))


def test_the_code_reads_environment_variables():
    found = read_by_the_code()
    assert {"SL2S_LOG_DIR", "SL2S_HOP_KEY", "SL2S_URL_<MACHINE>", "NO_COLOR"} <= set(
        found
    )
    assert len(found) > 20


def test_every_variable_the_code_reads_is_in_the_table():
    missing = {name: sorted(where) for name, where in read_by_the_code().items()}
    for name in documented():
        missing.pop(name, None)
    assert not missing, f"add to docs/runtime.md, Configuration: {missing}"


def test_every_row_of_the_table_is_read_by_the_code():
    assert documented() - set(read_by_the_code()) == set()
