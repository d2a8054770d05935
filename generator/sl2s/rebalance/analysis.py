"""What each top-level chunk of a module binds and which module-level names it reads.

stdlib only: `ast` for the statements, `symtable` for what a function or class body reads (it
knows Python's scoping rules: locals, closures, comprehensions, class scopes). Reads of statements
evaluated at module level (decorators, defaults, annotations, bases, plain statements) come from the
ast and may over-approximate (a lambda parameter named like a module-level name counts as a read):
the move then carries or imports a little more than needed, never less.
"""

from __future__ import annotations

import ast
import symtable
from dataclasses import dataclass, field

from sl2s.rebalance import imports as imp
from sl2s.rebalance.layout import Chunk, Segment

DYNAMIC = frozenset({"globals", "eval", "exec", "__import__", "vars"})


@dataclass(eq=False)
class Item:
    """One chunk, seen as a unit of meaning."""

    chunk: Chunk
    kind: str  # "doc" | "import" | "def" | "class" | "assign" | "compound" | "other"
    line: int  # line of the statement (the `def` line for functions) for messages
    binds: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    aliases: list[imp.Alias] = field(default_factory=list)  # for imports
    unsafe: list[tuple[int, str]] = field(
        default_factory=list
    )  # (line, why) if it had to move
    star: bool = False


@dataclass(eq=False)
class ModuleInfo:
    items: list[Item]
    binders: dict[str, list[Item]]
    docstring: Item | None

    def readers(self, names: set[str]) -> list[Item]:
        return [it for it in self.items if it.reads & names]


def _target_names(node: ast.AST) -> set[str]:
    return {
        n.id
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))
    }


def _loads(nodes) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        if node is None:
            continue
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                out.add(n.id)
    return out


def _outer_expressions(node: ast.AST) -> list[ast.AST]:
    """The parts of a def/class evaluated in the enclosing (module) scope."""
    out: list[ast.AST] = list(getattr(node, "decorator_list", []))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        out += a.defaults + [d for d in a.kw_defaults if d is not None]
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
            if arg is not None and arg.annotation is not None:
                out.append(arg.annotation)
        if node.returns is not None:
            out.append(node.returns)
    elif isinstance(node, ast.ClassDef):
        out += node.bases + [k.value for k in node.keywords]
    return out


def _table_globals(table: symtable.SymbolTable) -> set[str]:
    """Module-level names read (or declared global) anywhere inside a function/class block."""
    out: set[str] = set()
    stack = [table]
    while stack:
        t = stack.pop()
        for sym in t.get_symbols():
            if sym.is_global() and (
                sym.is_referenced() or sym.is_declared_global() or sym.is_assigned()
            ):
                out.add(sym.get_name())
        stack.extend(t.get_children())
    return out


def _compound_binds(node: ast.AST) -> set[str]:
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        for child in ast.iter_child_nodes(n):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                out |= {a.bound for a in imp.aliases(child) if a.name != "*"}
            elif isinstance(child, ast.Name) and isinstance(
                child.ctx, (ast.Store, ast.Del)
            ):
                out.add(child.id)
            elif isinstance(child, ast.ExceptHandler) and child.name:
                out.add(child.name)
            if not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
            ):
                stack.append(child)
    return out


def _hazards(node: ast.AST) -> list[tuple[int, str]]:
    """Why this code cannot be moved by a tool: `global`, names looked up at run time."""
    out: list[tuple[int, str]] = []
    for n in ast.walk(node):
        if isinstance(n, ast.Global):
            out.append(
                (n.lineno, f"`global {', '.join(n.names)}` rebinds module names")
            )
        elif (
            isinstance(n, ast.Name) and n.id in DYNAMIC and isinstance(n.ctx, ast.Load)
        ):
            out.append((n.lineno, f"`{n.id}` resolves names at run time"))
        elif (
            isinstance(n, ast.Attribute)
            and n.attr == "modules"
            and isinstance(n.value, ast.Name)
            and n.value.id == "sys"
        ):
            out.append((n.lineno, "`sys.modules` resolves names at run time"))
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "getattr"
        ):
            if any(isinstance(a, ast.Name) and a.id == "__name__" for a in ast.walk(n)):
                out.append(
                    (n.lineno, "`getattr` on this module resolves names at run time")
                )
    return out


def analyse(
    source: str, path: str, tree: ast.Module, segs: list[Segment]
) -> ModuleInfo:
    table = symtable.symtable(source, path, "exec")
    blocks: dict[tuple[str, int], symtable.SymbolTable] = {}
    for child in table.get_children():
        blocks.setdefault((child.get_name(), child.get_lineno()), child)
    items: list[Item] = []
    docstring: Item | None = None
    for seg in segs:
        if not isinstance(seg, Chunk):
            continue
        item = Item(seg, "other", seg.node.lineno)
        for stmt in seg.stmts:
            _describe(item, stmt, blocks)
        if len(seg.stmts) > 1 and item.kind in ("def", "class", "import"):
            item.kind = "other"
        if (
            not items
            and isinstance(seg.node, ast.Expr)
            and isinstance(seg.node.value, ast.Constant)
            and isinstance(seg.node.value.value, str)
        ):
            item.kind = "doc"
            docstring = item
        items.append(item)
    binders: dict[str, list[Item]] = {}
    for item in items:
        for name in item.binds:
            binders.setdefault(name, []).append(item)
    return ModuleInfo(items, binders, docstring)


def _describe(item: Item, stmt: ast.stmt, blocks) -> None:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        item.kind = "class" if isinstance(stmt, ast.ClassDef) else "def"
        item.binds.add(stmt.name)
        item.reads |= _loads(_outer_expressions(stmt))
        block = blocks.get((stmt.name, stmt.lineno))
        if block is None:  # older/newer Pythons may number decorated blocks differently
            block = next((b for (n, _), b in blocks.items() if n == stmt.name), None)
        if block is not None:
            item.reads |= _table_globals(block)
        else:
            item.reads |= _loads([stmt])
        item.unsafe += _hazards(stmt)
    elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
        item.kind = "import"
        for alias in imp.aliases(stmt):
            if alias.name == "*":
                item.star = True
                item.unsafe.append(
                    (stmt.lineno, "a star import hides which names it binds")
                )
            else:
                item.aliases.append(alias)
                item.binds.add(alias.bound)
    elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        item.kind = "assign"
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for t in targets:
            item.binds |= _target_names(t)
            item.reads |= _loads([t])  # `a[i] = v` reads a and i
        if isinstance(stmt, ast.AugAssign):
            item.reads |= _target_names(stmt.target)
        item.reads |= _loads([stmt.value, getattr(stmt, "annotation", None)])
        item.unsafe += _hazards(stmt)
    elif isinstance(
        stmt,
        (ast.If, ast.Try, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While),
    ) or type(stmt).__name__ in ("Match", "TryStar"):
        item.kind = "compound"
        item.binds |= _compound_binds(stmt)
        item.reads |= _loads([stmt])
        if any(
            isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
            for n in ast.walk(stmt)
        ):
            item.star = True
    else:
        item.kind = "other"
        item.binds |= _compound_binds(stmt)
        item.reads |= _loads([stmt])
