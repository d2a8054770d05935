"""Import statements as data: what an alias binds, where it points, how isort would order it, and
how black would print it. Pure."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass

LINE_LENGTH = 88


@dataclass(frozen=True)
class Alias:
    """One name an import statement binds. `module` is the `from` part without dots."""

    kind: str  # "import" | "from"
    level: int
    module: str
    name: str
    asname: str | None

    @property
    def bound(self) -> str:
        if self.asname:
            return self.asname
        return self.name.split(".")[0] if self.kind == "import" else self.name

    def target(self, package: str) -> tuple[str, str, str]:
        """Identity independent of how it is spelled: (kind, absolute module, name)."""
        if self.kind == "import":
            return ("import", self.name, self.asname or "")
        module = resolve(self.level, self.module, package)
        if module == "sl2s.api" and self.name in SAME_AS_RUNTIME:
            module = "sl2s.runtime"  # the same object, typed for checkers
        return ("from", module, self.name)

    @property
    def spelled(self) -> str:
        return f"{self.name} as {self.asname}" if self.asname else self.name


# Names `sl2s.api` re-exports unchanged from `sl2s.runtime`: `from sl2s.api import step` and
# `from sl2s.runtime import step` bind the same object.
SAME_AS_RUNTIME = frozenset({"UNSET", "Machine", "Run", "step"})


def aliases(stmt: ast.Import | ast.ImportFrom) -> list[Alias]:
    if isinstance(stmt, ast.Import):
        return [Alias("import", 0, "", a.name, a.asname) for a in stmt.names]
    return [
        Alias("from", stmt.level or 0, stmt.module or "", a.name, a.asname)
        for a in stmt.names
    ]


def package_of(module: str) -> str:
    """The package a module's relative imports start from (a module named `a.b.c` is in `a.b`)."""
    return module.rpartition(".")[0]


def resolve(level: int, module: str, package: str) -> str:
    if not level:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return (
            "." * level + module
        )  # beyond the top: keep it as written, it cannot match anything
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def relative_to(absolute: str, package: str) -> tuple[int, str]:
    """(level, module) spelling `absolute` from inside `package`: relative within one top
    package."""
    target = absolute.split(".")
    here = package.split(".") if package else []
    common = 0
    while common < min(len(target), len(here)) and target[common] == here[common]:
        common += 1
    if common == 0:
        return 0, absolute
    return len(here) - common + 1, ".".join(target[common:])


def respell(alias: Alias, from_package: str, to_package: str) -> Alias:
    """The same import as written in a module of `to_package` (relative imports re-rooted)."""
    if alias.kind == "import" or not alias.level:
        return alias
    level, module = relative_to(
        resolve(alias.level, alias.module, from_package), to_package
    )
    return Alias("from", level, module, alias.name, alias.asname)


def section(alias: Alias, first_party: frozenset[str]) -> int:
    if alias.level:
        return 4
    top = (alias.name if alias.kind == "import" else alias.module).split(".")[0]
    if top == "__future__":
        return 0
    if top in sys.stdlib_module_names:
        return 1
    if top in first_party:
        return 3
    return 2


def statement_key(alias: Alias, first_party: frozenset[str]) -> tuple:
    """isort's default (profile black) order of statements: section, plain before from, module."""
    module = alias.name if alias.kind == "import" else alias.module
    return (
        section(alias, first_party),
        alias.kind == "from",
        -alias.level,
        module.lower(),
        module,
    )


def name_key(name: str) -> tuple:
    """isort's `order_by_type`: CONSTANTS, then Classes, then functions; case-insensitive."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return (kind, name.lower(), name)


def render(aliases_: list[Alias], *, exploded: bool = False) -> str:
    """One import statement the way black prints it (from-imports explode one name per line)."""
    first = aliases_[0]
    names = [a.spelled for a in aliases_]
    if first.kind == "import":
        return f"import {', '.join(names)}\n"
    head = f"from {'.' * first.level}{first.module} import "
    line = head + ", ".join(names) + "\n"
    if not exploded and len(line) - 1 <= LINE_LENGTH:
        return line
    return head + "(\n" + "".join(f"    {n},\n" for n in names) + ")\n"


def is_exploded(text: str) -> bool:
    return "(" in text and "\n" in text.rstrip("\n")
