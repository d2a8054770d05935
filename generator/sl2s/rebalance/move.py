"""The pure move engine: take step functions out of module A and put them into module B.

`move(src, dst, functions)` returns the new texts of both modules and a report, or raises
`Sl2sError` with `file:line` diagnostics and changes nothing. It reads only the two modules' text:
`ast` and `symtable` find what the moved functions read, and the edit is a splice of whole lines, so
everything not moved stays byte for byte.

What moves: each function with its decorators, the comments directly above it and the blank lines
that separated it from the code above; module-level helpers (functions, classes, assignments) used
only by moved code, transitively, in their original order; the imports the moved code uses (merged
into B's imports, isort order, without duplicates; removed from A when nothing left there uses
them). What is still used by code staying in A is imported in B from A, never copied.

What stops a move ("needs a manual move", nothing written): `global` statements, names resolved at
run time (`globals()`, `eval`, `exec`, `__import__`, `vars`, `sys.modules`, `getattr(...__name__)`),
star imports in either module, a needed name defined under `if`/`try`/`with`/... or defined twice, a
moved function still used by code that stays, an import cycle between A and B. A name the moved code
needs that B already binds differently is a collision naming both definitions.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.rebalance import imports as imp
from sl2s.rebalance.analysis import Item, ModuleInfo, analyse
from sl2s.rebalance.layout import (
    Chunk,
    Gap,
    Segment,
    drop_empty_gaps,
    fix_blank_lines,
    insert_before,
    is_def,
    neighbours,
    remove_chunk,
    render,
    replace_lines,
    segments,
    split_lines,
)

MANUAL = "needs a manual move"
# The import every user module starts with (docs/architecture.md): it stays even when no step is
# left, so that moving a module's last step away and back restores it byte for byte.
RUNTIME_STEP = ("from", "sl2s.runtime", "step")


@dataclass(frozen=True)
class Module:
    """A user module: dotted import name (for imports between modules), path (for messages),
    text."""

    name: str
    path: str
    source: str | None  # None: the module does not exist yet


@dataclass(frozen=True)
class MoveReport:
    source: str  # path of A
    dest: str  # path of B
    functions: tuple[str, ...]
    helpers: tuple[str, ...] = ()  # module-level names carried along
    carried_imports: tuple[str, ...] = ()  # import lines added to B for the moved code
    cross_imports: tuple[
        str, ...
    ] = ()  # names B now imports from A (still used by A's code)
    removed_imports: tuple[str, ...] = ()  # import names A no longer needs
    kept_imports: tuple[
        str, ...
    ] = ()  # unused in A now, kept because comments are attached
    cross: tuple[str, ...] = ()  # the names of `cross_imports`
    shared_imports: tuple[str, ...] = ()  # share=True: import lines A gained from B


@dataclass(frozen=True)
class MoveResult:
    source: str
    dest: str
    report: MoveReport
    # Where each moved definition sat in A: {its name: (the nearest definition above it that
    # stayed in A or "" for "right below the imports", the nearest below it or "" for "at the
    # end")}. Passed back as `origins` when it moves back to A, it puts every definition where
    # it was (helpers anywhere included).
    origins: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(eq=False)
class _Parsed:
    module: Module
    text: str
    segs: list[Segment]
    info: ModuleInfo

    @property
    def package(self) -> str:
        return imp.package_of(self.module.name)


def _parse(module: Module, text: str) -> _Parsed:
    try:
        tree = ast.parse(text, filename=module.path)
    except SyntaxError as error:
        raise Sl2sError(
            Diagnostic(module.path, error.lineno or 0, f"cannot parse: {error.msg}")
        ) from None
    segs = segments(text, tree)
    return _Parsed(module, text, segs, analyse(text, module.path, tree, segs))


def _at(p: _Parsed, line: int) -> str:
    return f"{p.module.path}:{line}"


@dataclass
class _Plan:
    """What the analysis decided, before any text changes."""

    moving: list[Item]
    carried: list[imp.Alias] = field(default_factory=list)  # as spelled in A
    future: list[imp.Alias] = field(default_factory=list)
    cross: list[str] = field(default_factory=list)
    removed: list[imp.Alias] = field(default_factory=list)
    unbound_reads: set[str] = field(default_factory=set)
    back: list[str] = field(default_factory=list)  # share: names A imports back from B


def move(
    src: Module,
    dst: Module,
    functions: Sequence[str],
    *,
    before: str | None = None,
    new_module_text: str = "",
    pinned: Mapping[str, str] | None = None,
    origins: Mapping[str, tuple[str, str]] | None = None,
    share: bool = False,
    returned: Mapping[str, tuple[str, str]] | None = None,
) -> MoveResult:
    """Move top-level `functions` from `src` to `dst`.

    `before`: name of a function in B above which the moved block goes (default: the end of B).
    `new_module_text`: B's starting text when `dst.source` is None (e.g. its docstring).
    `pinned`: names of A that other modules import, each with where (`path:line`); they stay in
    A (B imports them), and a pinned function cannot move. The key `*` pins every name (another
    module imports A itself).
    `origins`: where moved definitions sat in B before an earlier move took them to A (the
    `origins` of that move's result): each goes back above the definition that was below it,
    when B has it again, else below the one that was above it, when B still has it; the others
    go above `before`. `returned`: the `origins` of definitions of B that earlier moves of the
    same run put back (in plan order): one going back below the same definition goes below them.
    `share`: move definitions (functions, classes, assignments) that code staying in A still
    uses into a module both may import (B): A then imports them from B. Refused when they need
    something that stays in A (B would import A, which imports B).
    """
    if src.source is None:
        raise Sl2sError(Diagnostic(src.path, 0, "does not exist"))
    a = _parse(src, src.source)
    b = _parse(dst, dst.source if dst.source is not None else new_module_text)
    plan = _decide(a, b, list(functions), dict(pinned or {}), share)
    return _apply(
        a,
        b,
        plan,
        list(functions),
        before,
        dict(origins or {}),
        share,
        dict(returned or {}),
    )


def _decide(
    a: _Parsed,
    b: _Parsed,
    functions: list[str],
    pinned: dict[str, str],
    share: bool = False,
) -> _Plan:
    problems: list[Diagnostic] = []

    def pin(item: Item) -> str | None:
        for name in sorted(item.binds):
            if name in pinned:
                return pinned[name]
        return pinned.get("*")

    def manual(p: _Parsed, line: int, why: str) -> None:
        problems.append(Diagnostic(p.module.path, line, f"{MANUAL}: {why}"))

    for p in (a, b):
        for item in p.info.items:
            if item.star:
                manual(
                    p, item.line, "a star import hides which names this module binds"
                )
    requested: list[Item] = []
    for name in functions:
        kinds = ("def", "class", "assign") if share else ("def",)
        found = [it for it in a.info.binders.get(name, []) if it.kind in kinds]
        if not found:
            raise Sl2sError(
                Diagnostic(a.module.path, 0, f"no top-level function {name!r} to move")
            )
        if len(a.info.binders[name]) > 1:
            others = ", ".join(_at(a, it.line) for it in a.info.binders[name])
            manual(a, found[0].line, f"{name!r} is defined more than once ({others})")
        requested.append(found[0])
    if problems:
        raise Sl2sError(sorted(set(problems)))

    # helpers: everything reachable, then drop what code staying in A still uses (greatest fixpoint)
    reach: list[Item] = list(requested)
    seen = set(map(id, reach))
    queue = list(requested)
    while queue:
        item = queue.pop()
        for name in sorted(item.reads):
            for binder in a.info.binders.get(name, []):
                if binder.kind in ("def", "class", "assign") and id(binder) not in seen:
                    seen.add(id(binder))
                    reach.append(binder)
                    queue.append(binder)
    moving = set(map(id, reach))
    requested_ids = set(map(id, requested))
    changed = True
    while changed:
        changed = False
        for item in reach:
            if id(item) in requested_ids or id(item) not in moving:
                continue
            if pin(item) is not None:
                moving.discard(id(item))
                changed = True
                continue
            if any(
                id(user) not in moving
                for user in a.info.readers(item.binds)
                if user is not item
            ):
                moving.discard(id(item))
                changed = True
    for item in requested:
        where = pin(item)
        if where is not None:
            name = next(iter(item.binds))
            manual(a, item.line, f"{name!r} is imported from this module at {where}")
        for user in a.info.readers(item.binds):
            if id(user) not in moving and not share:
                name = next(iter(item.binds))
                manual(
                    a,
                    item.line,
                    f"{name!r} is still used by code that stays, at {_at(a, user.line)}",
                )
    all_exports = _dunder_all(a)
    moving_items = [it for it in a.info.items if id(it) in moving]
    plan = _Plan(moving_items)
    for item in moving_items:
        for line, why in item.unsafe:
            manual(a, line, why)
        for name in sorted(item.binds & all_exports):
            manual(a, item.line, f"{name!r} is listed in `__all__`")
    for (
        item
    ) in (
        a.info.items
    ):  # code that stays and looks names up at run time may look for these
        if id(item) not in moving:
            for line, why in item.unsafe:
                if "run time" in why:
                    manual(
                        a,
                        line,
                        why + " (in code that stays, which may look up what moves)",
                    )

    # what the moved code reads
    moved_binds = set().union(*(it.binds for it in moving_items))
    all_reads = set().union(*(it.reads for it in moving_items))
    for name in sorted(all_reads):
        binders = a.info.binders.get(name, [])
        if len(binders) > 1 and name not in functions:
            where = ", ".join(_at(a, it.line) for it in binders)
            manual(
                a,
                binders[0].line,
                f"{name!r}, used by moved code, is bound more than once ({where})",
            )
    for name in sorted(all_reads - moved_binds):
        binders = a.info.binders.get(name, [])
        if not binders:
            plan.unbound_reads.add(name)
            continue
        if len(binders) > 1:
            continue
        binder = binders[0]
        if binder.kind == "compound":
            manual(
                a,
                binder.line,
                f"{name!r}, used by moved code, is defined under `{_keyword(binder)}`",
            )
        elif binder.kind == "import":
            alias = next(al for al in binder.aliases if al.bound == name)
            plan.carried.append(alias)
            staying = [u for u in a.info.readers({name}) if id(u) not in moving]
            if not staying and alias.target(a.package) != RUNTIME_STEP:
                plan.removed.append(alias)
        elif binder.kind in ("def", "class", "assign"):
            plan.cross.append(name)
        else:
            manual(
                a,
                binder.line,
                f"{name!r}, used by moved code, is bound by a statement that cannot move",
            )
    for item in a.info.items:
        if item.kind == "import":
            plan.future += [
                al
                for al in item.aliases
                if al.kind == "from" and al.module == "__future__" and not al.level
            ]
    if share:
        plan.back = sorted(
            set().union(*(it.binds for it in requested))
            & set().union(*(u.reads for u in a.info.items if id(u) not in moving))
        )
        for name in plan.cross:
            binder = a.info.binders[name][0]
            manual(
                a,
                binder.line,
                f"{', '.join(functions)} would be shared, but uses {name!r}, which stays "
                "here (the shared module cannot import a machine's module)",
            )
    if problems:
        raise Sl2sError(sorted(set(problems)))
    return plan


def _keyword(item: Item) -> str:
    return (
        type(item.chunk.node)
        .__name__.lower()
        .replace("asyncwith", "async with")
        .replace("asyncfor", "async for")
    )


def _dunder_all(p: _Parsed) -> set[str]:
    out: set[str] = set()
    for item in p.info.binders.get("__all__", []):
        for node in ast.walk(item.chunk.node):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def _name(item: Item) -> str:
    return min(item.binds) if item.binds else ""


def _origins(a: _Parsed, moving: set[int]) -> dict[str, tuple[str, str]]:
    """For each moving definition, the nearest definitions above and below it in A that stay:
    ("", ...) for "right below the imports", (..., "") for "at the end"; a definition next to
    another kind of statement is left out."""
    nearest: list[str | None] = []
    above: str | None = ""
    for item in a.info.items:
        nearest.append(above)
        if id(item) not in moving:
            if item.kind in ("def", "class", "assign") and item.binds:
                above = _name(item)
            elif item.kind not in ("doc", "import"):
                above = None
    out: dict[str, tuple[str, str]] = {}
    below: str | None = ""
    for n in range(len(a.info.items) - 1, -1, -1):
        item = a.info.items[n]
        if id(item) in moving:
            if nearest[n] is not None and below is not None and item.binds:
                out[_name(item)] = (nearest[n] or "", below)
        elif item.kind in ("def", "class", "assign") and item.binds:
            below = _name(item)
        elif item.kind not in ("doc", "import"):
            below = None
    return out


def _apply(
    a: _Parsed,
    b: _Parsed,
    plan: _Plan,
    functions: list[str],
    before: str | None,
    origins: dict[str, tuple[str, str]],
    share: bool = False,
    returned: dict[str, tuple[str, str]] | None = None,
) -> MoveResult:
    problems: list[Diagnostic] = []
    first_party = frozenset({a.module.name.split(".")[0], b.module.name.split(".")[0]})

    def collide(name: str, a_line: int, b_item: Item) -> None:
        problems.append(
            Diagnostic(
                b.module.path,
                b_item.line,
                f"cannot move {', '.join(functions)}: {name!r} is defined both at "
                f"{_at(a, a_line)} and {_at(b, b_item.line)}",
            )
        )

    def b_binder(name: str) -> Item | None:
        found = b.info.binders.get(name)
        return found[0] if found else None

    # --- names B gains: the moved definitions (replacing B's imports of them from A)
    replace_in_b: list[tuple[Item, imp.Alias]] = []
    for item in plan.moving:
        for name in sorted(item.binds):
            other = b_binder(name)
            if other is None:
                continue
            same = [
                al
                for al in other.aliases
                if al.bound == name
                and al.target(b.package) == ("from", a.module.name, name)
            ]
            if same and len(b.info.binders[name]) == 1:
                replace_in_b.append((other, same[0]))
            else:
                collide(name, item.line, other)
    # --- imports the moved code needs, spelled for B
    new_aliases: list[imp.Alias] = []
    for alias in plan.future + plan.carried:
        spelled = imp.respell(alias, a.package, b.package)
        kind, target, name = spelled.target(b.package)
        if kind == "from" and target == b.module.name:
            continue  # A imported it from B: B defines it
        other = b_binder(spelled.bound)
        if other is not None:
            if other.kind == "import" and any(
                al.bound == spelled.bound
                and al.target(b.package) == (kind, target, name)
                for al in other.aliases
            ):
                continue
            a_item = a.info.binders[alias.bound][0]
            collide(spelled.bound, a_item.line, other)
            continue
        if spelled not in new_aliases:
            new_aliases.append(spelled)
    new_aliases.sort(
        key=lambda al: (imp.statement_key(al, first_party), imp.name_key(al.name))
    )
    carried_text = [imp.render([al]).strip() for al in new_aliases]
    cross_aliases: list[imp.Alias] = []
    for name in plan.cross:
        level, module = imp.relative_to(a.module.name, b.package)
        spelled = imp.Alias("from", level, module, name, None)
        other = b_binder(name)
        if other is not None:
            if not any(
                al.bound == name
                and al.target(b.package) == ("from", a.module.name, name)
                for al in other.aliases
            ):
                collide(name, a.info.binders[name][0].line, other)
            continue
        cross_aliases.append(spelled)
    # --- builtins and undefined names must not be shadowed in B; B's own reads must not be captured
    for name in sorted(plan.unbound_reads):
        other = b_binder(name)
        if other is not None:
            problems.append(
                Diagnostic(
                    b.module.path,
                    other.line,
                    f"cannot move {', '.join(functions)}: moved code uses the builtin/global "
                    f"{name!r}, which {_at(b, other.line)} redefines",
                )
            )
    gained = set().union(*(it.binds for it in plan.moving)) | {
        al.bound for al in new_aliases + cross_aliases
    }
    for item in b.info.items:
        for name in sorted(item.reads & gained):
            if name not in b.info.binders:
                problems.append(
                    Diagnostic(
                        b.module.path,
                        item.line,
                        f"cannot move {', '.join(functions)}: {name!r} would capture the name "
                        f"{_at(b, item.line)} uses",
                    )
                )
    # --- an import cycle A <-> B
    if cross_aliases:
        removed_ids = {id(al) for al in plan.removed}
        for item in a.info.items:
            if item.kind != "import" or id(item) in map(id, plan.moving):
                continue
            for al in item.aliases:
                if id(al) in removed_ids:
                    continue
                kind, target, name = al.target(a.package)
                if target == b.module.name or f"{target}.{name}" == b.module.name:
                    problems.append(
                        Diagnostic(
                            a.module.path,
                            item.line,
                            f"{MANUAL}: B would import {', '.join(plan.cross)} from A, "
                            "and A imports B here (an import cycle)",
                        )
                    )
    if problems:
        raise Sl2sError(sorted(set(problems)))

    # ---------- text: A
    left_from = _origins(a, {id(it) for it in plan.moving})
    touched_a: list[Chunk] = []
    moved_pairs: list[tuple[list[str], Chunk]] = []
    moved_ids = {id(it.chunk) for it in plan.moving}
    # definitions going back where an earlier move took them from: (anchor, (sep, chunk))
    returning: list[tuple[Chunk | None, tuple[list[str], Chunk]]] = []
    for item in plan.moving:
        touched_a += [
            c for c in neighbours(a.segs, item.chunk) if id(c) not in moved_ids
        ]
        sep = remove_chunk(a.segs, item.chunk)
        back = _return_anchor(b, origins.get(_name(item)), returned or {})
        if back is not False:
            returning.append((back, (sep, item.chunk)))
        else:
            moved_pairs.append((sep, item.chunk))
    kept: list[str] = []
    removed_names: list[str] = []
    by_stmt: dict[int, list[imp.Alias]] = {}
    for alias in plan.removed:
        by_stmt.setdefault(id(a.info.binders[alias.bound][0]), []).append(alias)
    for item in a.info.items:
        drop = by_stmt.get(id(item))
        if not drop:
            continue
        if _has_comments(item):
            kept += [al.bound for al in drop]
            continue
        removed_names += [al.bound for al in drop]
        rest = [al for al in item.aliases if al not in drop]
        if rest:
            _rewrite_import(item, rest)
        else:
            touched_a += neighbours(a.segs, item.chunk)
            _remove_import(a.segs, item, first_party)
    shared_aliases = []
    for (
        name
    ) in plan.back:  # share: what stays in A imports the shared definitions from B
        level, module = imp.relative_to(b.module.name, a.package)
        shared_aliases.append(imp.Alias("from", level, module, name, None))
        touched_a.append(_add_import(a, shared_aliases[-1], first_party))
    fix_blank_lines(a.segs, [c for c in touched_a if any(s is c for s in a.segs)])

    # ---------- text: B
    touched_b: list[Chunk] = []
    for item, alias in replace_in_b:
        rest = [al for al in item.aliases if al is not alias]
        if rest:
            _rewrite_import(item, rest)
        else:
            touched_b += neighbours(b.segs, item.chunk)
            _remove_import(b.segs, item, first_party)
    for alias in new_aliases + cross_aliases:
        touched_b.append(_add_import(b, alias, first_party))
    anchor = None
    if before is not None:
        found = [it for it in b.info.binders.get(before, []) if it.kind == "def"]
        moved_reads = set().union(*(it.reads for it in plan.moving))
        anchor = (
            _owned_top(b, found[0], moved_reads)
            if found and any(s is found[0].chunk for s in b.segs)
            else None
        )
    if moved_pairs:
        upper = _chunk_above(b.segs, anchor)
        first_sep, first = moved_pairs[0]
        if upper is None:
            pass
        elif is_def(first) or is_def(upper):
            first_sep = ["\n", "\n"]
        elif isinstance(upper.node, (ast.Import, ast.ImportFrom)):
            first_sep = ["\n"]
        moved_pairs[0] = (first_sep, first)
        if upper is not None:
            touched_b.append(upper)
        if anchor is not None:
            touched_b.append(anchor)
    insert_before(b.segs, anchor, moved_pairs)
    touched_b += [c for _, c in moved_pairs]
    for back, (sep, chunk) in returning:
        upper = _chunk_above(b.segs, back)
        if upper is not None and (is_def(chunk) or is_def(upper)):
            sep = ["\n", "\n"]
        elif upper is not None and not sep:
            sep = ["\n"]
        insert_before(b.segs, back, [(sep, chunk)])
        touched_b += [c for c in (upper, back, chunk) if c is not None]
    fix_blank_lines(b.segs, [c for c in touched_b if any(s is c for s in b.segs)])

    report = MoveReport(
        source=a.module.path,
        dest=b.module.path,
        functions=tuple(functions),
        helpers=tuple(
            sorted(
                set().union(*(it.binds for it in plan.moving)) - set(functions),
                key=_order(plan),
            )
        ),
        carried_imports=tuple(t for t in carried_text if "__future__" not in t),
        cross_imports=tuple(imp.render([al]).strip() for al in cross_aliases),
        removed_imports=tuple(removed_names),
        kept_imports=tuple(kept),
        cross=tuple(plan.cross),
        shared_imports=tuple(imp.render([al]).strip() for al in shared_aliases),
    )
    new_a = _newlines(render(a.segs), a.text)
    new_b = _newlines(render(b.segs), b.text)
    _check_conserved(a, b, new_a, new_b)
    return MoveResult(new_a, new_b, report, left_from)


def _return_anchor(
    b: _Parsed, where: tuple[str, str] | None, returned: Mapping[str, tuple[str, str]]
) -> Chunk | None | Literal[False]:
    """Where a definition that came from B goes back: at the end (None) when it was last, above
    the definition that was below it, else above the chunk that follows the definition that was
    above it, or below the imports; False when B has neither (then it goes with the others).
    """
    if where is None:
        return False
    above, below = where
    if below == "":
        return None  # it was the last definition: it is again
    found = b.info.binders.get(below, [])
    if len(found) == 1 and found[0].kind in ("def", "class", "assign"):
        if any(s is found[0].chunk for s in b.segs):
            return found[0].chunk
    if above == "":
        start = 0  # below the imports: the first chunk that is not header
    else:
        found = b.info.binders.get(above, [])
        if len(found) != 1 or found[0].kind not in ("def", "class", "assign"):
            return False
        index = next((i for i, s in enumerate(b.segs) if s is found[0].chunk), None)
        if index is None:
            return False
        start = index + 1
    for seg in b.segs[start:]:
        if not isinstance(seg, Chunk) or _is_header(b, seg):
            continue
        names = {n for it in b.info.items if it.chunk is seg for n in it.binds}
        if not any(returned[n][0] == above for n in names if n in returned):
            return seg  # past what this run already put back below the same definition
    return None


def _is_header(b: _Parsed, seg: Chunk) -> bool:
    return any(it.chunk is seg and it.kind in ("doc", "import") for it in b.info.items)


def _newlines(text: str, original: str) -> str:
    """Keep a CRLF module CRLF (inserted lines and moved-in code take its line endings)."""
    first = original.find("\n")
    if first <= 0 or original[first - 1] != "\r":
        return text
    return "".join(
        (
            line[:-1] + "\r\n"
            if line.endswith("\n") and not line.endswith("\r\n")
            else line
        )
        for line in split_lines(text)
    )


def _code_lines(text: str) -> list[str]:
    """Every non-blank line outside import statements, without its line ending."""
    lines = split_lines(text)
    skip: set[int] = set()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            skip.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return sorted(
        ln.rstrip("\r\n") for i, ln in enumerate(lines) if i not in skip and ln.strip()
    )


def _check_conserved(a: _Parsed, b: _Parsed, new_a: str, new_b: str) -> None:
    """Safety net: apart from imports and blank lines, the two modules hold the same lines."""
    try:
        same = sorted(_code_lines(a.text) + _code_lines(b.text)) == sorted(
            _code_lines(new_a) + _code_lines(new_b)
        )
    except SyntaxError:
        same = False
    if not same:
        raise Sl2sError(
            Diagnostic(
                a.module.path,
                0,
                f"internal error: moving to {b.module.path} would not keep every line; "
                "nothing written",
            )
        )


def _order(plan: _Plan):
    position = {}
    for n, item in enumerate(plan.moving):
        for name in item.binds:
            position[name] = n
    return lambda name: (position.get(name, 0), name)


def _has_comments(item: Item) -> bool:
    return any("#" in line for line in item.chunk.lines)


def _rewrite_import(item: Item, aliases_: list[imp.Alias]) -> None:
    node = item.chunk.node
    assert node.end_lineno is not None
    text = "".join(
        item.chunk.lines[
            node.lineno
            - item.chunk.first_line : node.end_lineno
            - item.chunk.first_line
            + 1
        ]
    )
    replace_lines(
        item.chunk,
        node.lineno,
        node.end_lineno,
        imp.render(aliases_, exploded=imp.is_exploded(text)),
    )
    item.aliases = list(aliases_)
    item.binds = {al.bound for al in aliases_}


def _import_chunks(segs: list[Segment], items: list[Item]) -> list[Item]:
    """The leading import block: top-level imports before the first other statement."""
    by_chunk = {id(it.chunk): it for it in items}
    out: list[Item] = []
    for seg in segs:
        if not isinstance(seg, Chunk):
            continue
        item = by_chunk.get(id(seg))
        if item is None or item.kind == "doc":
            continue
        if item.kind != "import":
            break
        out.append(item)
    return out


def _section(item: Item, first_party: frozenset[str]) -> int:
    return imp.section(item.aliases[0], first_party) if item.aliases else -1


def _remove_import(
    segs: list[Segment], item: Item, first_party: frozenset[str]
) -> None:
    index = next(i for i, s in enumerate(segs) if s is item.chunk)
    nxt = next((s for s in segs[index + 1 :] if isinstance(s, Chunk)), None)
    following_same = False
    if nxt is not None and index + 1 < len(segs) and segs[index + 1] is nxt:
        node = nxt.node
        if isinstance(node, (ast.Import, ast.ImportFrom)) and len(nxt.stmts) == 1:
            following_same = imp.section(imp.aliases(node)[0], first_party) == _section(
                item, first_party
            )
    remove_chunk(segs, item.chunk, take_following=following_same)


def _add_import(b: _Parsed, alias: imp.Alias, first_party: frozenset[str]) -> Chunk:
    block = [
        it
        for it in _import_chunks(b.segs, b.info.items)
        if any(s is it.chunk for s in b.segs)
    ]
    # merge into `from X import ...` of the same module when it carries no comments
    if alias.kind == "from":
        for item in block:
            node = item.chunk.node
            if (
                isinstance(node, ast.ImportFrom)
                and (node.level or 0) == alias.level
                and (node.module or "") == alias.module
                and not _has_comments(item)
                and item.aliases
                and not item.star
            ):
                names = list(item.aliases)
                keys = [imp.name_key(al.name) for al in names]
                if keys == sorted(keys):
                    at = next(
                        (i for i, k in enumerate(keys) if k > imp.name_key(alias.name)),
                        len(names),
                    )
                    names.insert(at, alias)
                else:
                    names.append(alias)
                _rewrite_import(item, names)
                return item.chunk
    key = imp.statement_key(alias, first_party)
    sec = imp.section(alias, first_party)
    text = imp.render([alias])
    new_item = Item(
        Chunk([ast.parse(text).body[0]], [text], 1, 1),
        "import",
        1,
        {alias.bound},
        set(),
        [alias],
    )
    b.info.items.append(new_item)
    later = (
        next(
            (it for it in block if imp.statement_key(it.aliases[0], first_party) > key),
            None,
        )
        if block
        else None
    )
    if later is not None:
        index = next(i for i, s in enumerate(b.segs) if s is later.chunk)
        prev = block[block.index(later) - 1] if block.index(later) > 0 else None
        later_same = _section(later, first_party) == sec
        if prev is None:
            sep_before = None  # keep the run above the block (after the docstring)
        else:
            sep_before = [] if _section(prev, first_party) == sec else ["\n"]
        below = [] if later_same else ["\n"]
        run = _blank_tail(b.segs, index)
        if sep_before is None:
            sep_before = run
        _replace_blank_tail(b.segs, index, [])
        idx = next(i for i, s in enumerate(b.segs) if s is later.chunk)
        _insert_at(
            b.segs, idx, [Gap(list(sep_before)), new_item.chunk, Gap(list(below))]
        )
        return new_item.chunk
    if block:
        last = block[-1]
        index = next(i for i, s in enumerate(b.segs) if s is last.chunk)
        sep = [] if _section(last, first_party) == sec else ["\n"]
        _insert_at(b.segs, index + 1, [Gap(sep), new_item.chunk])
        return new_item.chunk
    # no imports yet: right after the docstring, else at the top
    doc = b.info.docstring
    if doc is not None and any(s is doc.chunk for s in b.segs):
        index = next(i for i, s in enumerate(b.segs) if s is doc.chunk)
        _insert_at(b.segs, index + 1, [Gap(["\n"]), new_item.chunk])
        return new_item.chunk
    first = next((i for i, s in enumerate(b.segs) if isinstance(s, Chunk)), None)
    if first is None:
        if b.segs and not b.segs[-1].lines[-1].endswith("\n"):
            b.segs[-1].lines[-1] += "\n"
        b.segs.append(new_item.chunk)
        return new_item.chunk
    first_chunk = b.segs[first]
    assert isinstance(first_chunk, Chunk)
    node = first_chunk.node
    gap = (
        ["\n", "\n"]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        else ["\n"]
    )
    _insert_at(b.segs, first, [new_item.chunk, Gap(gap)])
    return new_item.chunk


def _owned_top(b: _Parsed, item: Item, moved_reads: set[str]) -> Chunk:
    """The first chunk of `item`'s own helpers sitting right above it (used by nothing else, and
    not by the code being moved in), so that a block inserted before `item` does not split it
    from them."""
    chunks = [s for s in b.segs if isinstance(s, Chunk)]
    by_chunk = {id(it.chunk): it for it in b.info.items}
    owned = {id(item)}
    top = item.chunk
    index = next(i for i, c in enumerate(chunks) if c is top)
    while index > 0:
        above = by_chunk.get(id(chunks[index - 1]))
        if (
            above is None
            or above.kind not in ("def", "class", "assign")
            or not above.binds
        ):
            break
        if above.binds & moved_reads:
            break
        users = b.info.readers(above.binds)
        if not users or any(id(u) not in owned for u in users if u is not above):
            break
        owned.add(id(above))
        top = above.chunk
        index -= 1
    return top


def _chunk_above(segs: list[Segment], anchor: Chunk | None) -> Chunk | None:
    index = (
        len(segs)
        if anchor is None
        else next(i for i, s in enumerate(segs) if s is anchor)
    )
    for seg in reversed(segs[:index]):
        if isinstance(seg, Chunk):
            return seg
    return None


def _blank_tail(segs: list[Segment], index: int) -> list[str]:
    if index and isinstance(segs[index - 1], Gap):
        gap = segs[index - 1].lines
        n = 0
        while n < len(gap) and not gap[len(gap) - 1 - n].strip():
            n += 1
        return gap[len(gap) - n :]
    return []


def _replace_blank_tail(segs: list[Segment], index: int, lines: list[str]) -> None:
    tail = _blank_tail(segs, index)
    if index and isinstance(segs[index - 1], Gap):
        gap = segs[index - 1]
        del gap.lines[len(gap.lines) - len(tail) :]
        gap.lines.extend(lines)
    else:
        segs.insert(index, Gap(list(lines)))


def _insert_at(segs: list[Segment], index: int, new: list[Segment]) -> None:
    segs[index:index] = new
    drop_empty_gaps(segs)
