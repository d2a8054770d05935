"""User-owned flow modules: find the step functions in them, append stubs touching no byte.

Steps are found by their decorator — `@step("flow", "template")` or `@step("flow", "template",
id="x")`, also spelled `@runtime.step(...)` / `@sl2s.runtime.step(...)` — on top-level functions,
never by function name or position. Everything else in the module (helpers, imports, comments,
formatting) is the user's and is left exactly as it is.

Pure functions over source text: `scan_module(source)` and `append_stubs(source, stubs)`. The
rebalance engine reuses both.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeGuard

from sl2s.names import IdentifierError, step_slug

if TYPE_CHECKING:
    import libcst as cst
else:

    class _LibCST:
        """libcst, imported when first used (0.17-0.2 s): a generate that creates the user
        modules, and reads none, never needs it. The first use puts the module itself here.
        """

        def __getattr__(self, name: str) -> Any:
            import libcst

            globals()["cst"] = libcst
            return getattr(libcst, name)

    cst = _LibCST()


@dataclass(frozen=True)
class FoundStep:
    """One `@step(...)`-decorated top-level function of a user module."""

    flow: str  # the decorator's first argument
    id: str  # the `id=` argument, or step_slug(template)
    template: str  # the decorator's second argument
    function: str  # the function's name (the user may rename it)
    params: tuple[
        str, ...
    ]  # parameter names (context fields it receives), *args/**kwargs excluded
    line: int  # line of the function's first decorator (as code.co_firstlineno)
    # (field, annotation, line) of each context field the function's annotations type: its
    # annotated parameters, and the keys of a TypedDict of the module it is declared to return.
    # Only annotations a generated module can repeat (builtins, `|`, subscripts) are kept.
    types: tuple[tuple[str, str, int], ...] = ()


BOM = "\ufeff"


class UserCodeError(ValueError):
    """A user module that cannot be read: a syntax error or a malformed @step decorator."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _is_step_decorator(expr: cst.BaseExpression) -> TypeGuard[cst.Call]:
    if not isinstance(expr, cst.Call):
        return False
    func = expr.func
    if isinstance(func, cst.Name):
        return func.value == "step"
    return isinstance(func, cst.Attribute) and func.attr.value == "step"


def _string(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, (cst.SimpleString, cst.ConcatenatedString)):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _params(fn: cst.FunctionDef) -> tuple[str, ...]:
    p = fn.params
    return tuple(
        param.name.value for param in (*p.posonly_params, *p.params, *p.kwonly_params)
    )


def parse(source: str) -> cst.Module:
    source = source.removeprefix(BOM)
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        raise UserCodeError(error.raw_line, f"cannot parse: {error.message}") from None


def scan_module(source: str) -> list[FoundStep]:
    """The step functions of a user module, in file order.

    Raises UserCodeError for a syntax error or a `@step(...)` whose flow/template is not a string
    literal (the step could then not be matched to the plan).
    """
    source = source.removeprefix(BOM)  # a BOM is fine in a file, not in a parsed string
    module = parse(source)
    tree = ast.parse(source)
    lines = _decorator_lines(tree)
    found: list[FoundStep] = []
    functions = [st for st in module.body if isinstance(st, cst.FunctionDef)]
    typed: dict[str, tuple[tuple[str, str, int], ...]] | None = None
    defs = [
        n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for statement, node, (first_line, decorator_lines) in zip(functions, defs, lines):
        for decorator, line in zip(statement.decorators, decorator_lines):
            call = decorator.decorator
            if _is_step_decorator(call):
                step = _found(call, statement, first_line, line)
                if typed is None:
                    typed = _typed_dicts(tree)
                types = _types(node, typed)
                if types:
                    step = replace(step, types=types)
                found.append(step)
    return found


def _decorator_lines(tree: ast.Module) -> list[tuple[int, list[int]]]:
    """(first decorator line, each decorator's line) of every top-level function, in order.

    Taken from `ast` (the same source, the same top-level functions in the same order): libcst's
    PositionProvider costs four times the parse itself.
    """
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorators = [d.lineno for d in node.decorator_list]
            out.append((decorators[0] if decorators else node.lineno, decorators))
    return out


# Names an annotation may use to be repeated in generated code (which imports nothing for it).
PORTABLE = frozenset(
    "None bool int float complex str bytes bytearray list dict tuple set frozenset "
    "object".split()
)


def portable(node: ast.expr) -> str | None:
    """The annotation as source text if generated code can repeat it as it is, else None.

    `object` (no claim about the type) is None too.
    """
    if isinstance(node, ast.Name) and node.id == "object":
        return None

    def ok(n: ast.expr) -> bool:
        if isinstance(n, ast.Name):
            return n.id in PORTABLE
        if isinstance(n, ast.Constant):
            return n.value is None
        if isinstance(n, ast.BinOp):
            return isinstance(n.op, ast.BitOr) and ok(n.left) and ok(n.right)
        if isinstance(n, ast.Subscript):
            inner = n.slice
            items = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return ok(n.value) and all(
                ok(i) or (isinstance(i, ast.Constant) and i.value is Ellipsis)
                for i in items
            )
        return False

    return ast.unparse(node) if ok(node) else None


def stub_types(stub: str, first_line: int) -> tuple[tuple[str, str, int], ...]:
    """What scan_module() finds as `types` in a rendered stub placed at `first_line`."""
    node = ast.parse(stub).body[0]
    assert isinstance(node, ast.FunctionDef)
    return tuple((f, t, line + first_line - 1) for f, t, line in _types(node, {}))


def _typed_dicts(tree: ast.Module) -> dict[str, tuple[tuple[str, str, int], ...]]:
    """The module's top-level `class X(TypedDict)`: their portable (key, annotation, line)."""
    out: dict[str, tuple[tuple[str, str, int], ...]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not any(
            (isinstance(b, ast.Name) and b.id == "TypedDict")
            or (isinstance(b, ast.Attribute) and b.attr == "TypedDict")
            for b in node.bases
        ):
            continue
        keys = []
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                text = portable(item.annotation)
                if text is not None:
                    keys.append((item.target.id, text, item.lineno))
        out[node.name] = tuple(keys)
    return out


def _types(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    typed: dict[str, tuple[tuple[str, str, int], ...]],
) -> tuple[tuple[str, str, int], ...]:
    a = node.args
    out = []
    for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs):
        if arg.annotation is not None:
            text = portable(arg.annotation)
            if text is not None:
                out.append((arg.arg, text, arg.lineno))
    returns = node.returns
    if isinstance(returns, ast.Constant) and isinstance(returns.value, str):
        try:  # a quoted annotation: -> "Result"
            returns = ast.parse(returns.value, mode="eval").body
        except SyntaxError:
            returns = None
    if isinstance(returns, ast.Name) and returns.id in typed:
        out.extend(typed[returns.id])
    return tuple(out)


def _found(
    call: cst.Call, fn: cst.FunctionDef, first_line: int, line: int
) -> FoundStep:
    positional = [a for a in call.args if a.keyword is None and not a.star]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    flow = _string(positional[0].value) if positional else None
    template = (
        _string(positional[1].value)
        if len(positional) > 1
        else _string(keywords.get("template", cst.Name("x")))
    )
    if flow is None and "flow" in keywords:
        flow = _string(keywords["flow"])
    if flow is None or template is None:
        raise UserCodeError(
            line,
            f"@step on {fn.name.value}() needs the flow and the log template as string literals",
        )
    if "id" in keywords:
        step_id = _string(keywords["id"])
        if step_id is None:
            raise UserCodeError(
                line, f"@step on {fn.name.value}(): id= must be a string literal"
            )
    else:
        try:
            step_id = step_slug(template)
        except IdentifierError as error:
            raise UserCodeError(line, f"@step on {fn.name.value}(): {error}") from None
    return FoundStep(flow, step_id, template, fn.name.value, _params(fn), first_line)


def module_names(module: cst.Module) -> set[str]:
    """Names bound at the top level of a module (functions, classes, assignments, imports)."""
    names: set[str] = set()

    def target(node: cst.BaseExpression) -> None:
        if isinstance(node, cst.Name):
            names.add(node.value)
        elif isinstance(node, (cst.Tuple, cst.List)):
            for element in node.elements:
                target(element.value)
        elif isinstance(node, cst.StarredElement):
            target(node.value)

    for statement in module.body:
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            names.add(statement.name.value)
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.Assign):
                    for t in small.targets:
                        target(t.target)
                elif isinstance(small, (cst.AnnAssign, cst.AugAssign)):
                    target(small.target)
                elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(
                    small.names, cst.ImportStar
                ):
                    for alias in small.names:
                        if alias.asname is not None:
                            target(alias.asname.name)
                        else:
                            dotted = cst.Module([]).code_for_node(alias.name)
                            names.add(dotted.split(".")[0])
        else:
            # if/try/with/for at top level: collect names bound directly inside, conservatively
            for node in _walk(statement):
                if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
                    names.add(node.name.value)
                elif isinstance(node, cst.Name):
                    names.add(node.value)
    return names


def _walk(node: cst.CSTNode):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def append_stubs(source: str, stubs: list[str]) -> str:
    """`source` with the stub functions (black-formatted source text, one per entry) appended.

    Uses libcst: every existing byte stays as it is and in place. Comments and blank lines at the
    end of the module stay before the new stubs; the stubs follow after two blank lines.
    """
    if not stubs:
        return source
    if source.startswith(BOM):
        return BOM + append_stubs(source[len(BOM) :], stubs)
    module = parse(source)
    new_body: list[cst.SimpleStatementLine | cst.BaseCompoundStatement] = []
    for stub in stubs:
        new_body.extend(cst.parse_module(stub).body)
    footer = list(module.footer)
    blank = cst.EmptyLine(
        indent=False, whitespace=cst.SimpleWhitespace(""), comment=None
    )
    before = footer if module.body else [*module.header, *footer]
    if before or module.body:
        # Trailing comments and blank lines stay where they are, in front of the first stub, which
        # follows after (at least) two blank lines.
        trailing_blank = 0
        for line in reversed(before):
            if line.comment is not None:
                break
            trailing_blank += 1
        lead = [*footer, *[blank] * max(0, 2 - trailing_blank)]
        first = new_body[0]
        new_body[0] = first.with_changes(leading_lines=[*lead, *first.leading_lines])
    rest = []
    for stub_statement in new_body[1:]:
        rest.append(
            stub_statement.with_changes(
                leading_lines=[blank, blank, *stub_statement.leading_lines]
            )
        )
    updated = module.with_changes(
        body=[*module.body, new_body[0], *rest], footer=[], has_trailing_newline=True
    )
    return updated.code
