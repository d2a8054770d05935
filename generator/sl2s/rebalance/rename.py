"""Update a step's decorator in place when its log line is renamed in the plan. Pure text splice.

Only the `@step(...)` decorator of the named top-level function changes; when its arguments are
plain literals without comments it is re-laid-out the way the stub template writes it (one line if
it fits, else one argument per line), otherwise only the template literal (and `id=`) is replaced.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import TypeGuard

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.generate.encode import bracket, lit
from sl2s.rebalance.layout import split_lines


def _is_step(node: ast.expr) -> TypeGuard[ast.Call]:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "step") or (
        isinstance(f, ast.Attribute) and f.attr == "step"
    )


def _col(line: str, byte_offset: int) -> int:
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", "replace"))


def retemplate(
    source: str, path: str, function: str, template: str, step_id: str | None = None
) -> str:
    """`source` with the @step decorator of `function` naming `template` (and `id=step_id` if the
    decorator has an `id=`)."""
    tree = ast.parse(source, filename=path)
    fn = next(
        (
            n
            for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name == function
        ),
        None,
    )
    deco = (
        None
        if fn is None
        else next((d for d in fn.decorator_list if _is_step(d)), None)
    )
    if deco is None:
        raise Sl2sError(
            Diagnostic(path, 0, f"no @step function {function}() to rename")
        )
    lines = split_lines(source)
    first, last = deco.lineno, deco.end_lineno
    text = "".join(lines[first - 1 : last])
    positional = [a for a in deco.args if not isinstance(a, ast.Starred)]
    keywords = {k.arg: k.value for k in deco.keywords if k.arg}
    literal = all(
        isinstance(a, ast.Constant) and isinstance(a.value, str) for a in positional
    ) and all(isinstance(v, ast.Constant) for v in keywords.values())
    head_line = lines[first - 1]
    at = head_line[: _col(head_line, deco.col_offset)]
    if (
        literal
        and not _comments(text)
        and len(positional) == 2
        and at.strip() == "@"
        and set(keywords) <= {"id"}
        and _simple(deco)
    ):
        flow = positional[0]
        assert isinstance(flow, ast.Constant)  # `literal`
        args = [lit(flow.value), lit(template)]
        if "id" in keywords:
            old_id = keywords["id"]
            assert isinstance(old_id, ast.Constant)
            args.append("id=" + lit(step_id if step_id is not None else old_id.value))
        func = ast.get_source_segment(source, deco.func) or "step"
        new = bracket(at + func, args) + "\n"
        return "".join(lines[: first - 1]) + new + "".join(lines[last:])
    # splice only the literals, right to left so offsets stay valid
    edits = []
    target = positional[1] if len(positional) > 1 else keywords.get("template")
    if target is not None:
        edits.append((target, lit(template)))
    if step_id is not None and "id" in keywords:
        edits.append((keywords["id"], lit(step_id)))
    for node, new in sorted(
        edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True
    ):
        assert node.end_lineno is not None and node.end_col_offset is not None
        lo_line, hi_line = node.lineno - 1, node.end_lineno - 1
        start = _col(lines[lo_line], node.col_offset)
        end = _col(lines[hi_line], node.end_col_offset)
        lines[lo_line : hi_line + 1] = [
            lines[lo_line][:start] + new + lines[hi_line][end:]
        ]
    return "".join(lines)


def _comments(text: str) -> bool:
    try:
        return any(
            t.type == tokenize.COMMENT
            for t in tokenize.generate_tokens(io.StringIO(text).readline)
        )
    except (tokenize.TokenError, SyntaxError):
        return True


def _simple(deco: ast.Call) -> bool:
    return not any(isinstance(a, ast.Starred) for a in deco.args) and all(
        k.arg for k in deco.keywords
    )
