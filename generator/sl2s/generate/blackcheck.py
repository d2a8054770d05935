"""Cheap proof that rendered Python parses, has only the expected statements, and is black-stable.

black costs ~0.75 ms per line and ast.parse a few µs per line; a large plan renders hundreds of
thousands of lines. Every generated Python file is a header plus top-level definitions joined by
two blank lines (black's own separator), each rendered from a template in black's layout. What
needs checking is therefore each chunk's *shape*: the chunk with every plain string literal
replaced by `"s"`, every non-keyword name by `x`, runs of one import line or one bracket item
collapsed, and each distinct statement of a function body kept once (black formats those line by
line and statement by statement; the middle line of a `f(\n    items\n)` is padded back to 88
columns). When every line of the real chunk fits in 88 columns and nothing outside its string
literals is a backslash or non-ASCII (the literals come from encode.lit, already as black writes
them), its shape parses iff it does, has the same top-level statements, and black treats it
exactly as the chunk. So ast.parse and black run once
per distinct shape (a few dozen for any plan). Any other chunk is checked as it is. A chunk black
would change is replaced by black's output, which is then checked in turn.
"""

from __future__ import annotations

import ast
import hashlib
import keyword
import re
from collections.abc import Iterable

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.generate.encode import LINE_LENGTH, width
from sl2s.generate.rendercache import RenderCache

_KEEP = sorted(set(keyword.kwlist) | set(keyword.softkwlist), key=len, reverse=True)
# A double-quoted one-line literal (escapes allowed: literals come from encode.lit, which writes
# them as black does, so black leaves them alone whatever they contain).
_STRING = re.compile(r'(?<!")"(?:[^"\\\n]|\\.)*"(?!")')
# Decorator names stay: `@x(` would be shorter than any real decorator head (see _pad_hugs).
_NAME = re.compile(r"(?<!@)\b(?!(?:" + "|".join(_KEEP) + r")\b)[A-Za-z_][A-Za-z0-9_]*")
_LONG = re.compile(rf"^.{{{LINE_LENGTH + 1},}}$", re.MULTILINE)
# Runs of one import line, or of one bracket item (`    x=x,`): black treats each alike.
_REPEAT = re.compile(r"^((?:from [^\n]*| +[^\n]*,)\n)\1+", re.MULTILINE)


def shape(chunk: str) -> str | None:
    """The chunk's shape, or None when only the chunk itself can stand for it.

    Within a function body black formats each statement on its own, so the shape keeps each
    distinct body statement once, in order of first appearance.
    """
    if chunk.isascii():
        if _LONG.search(chunk):
            return None
    elif any(width(line) > LINE_LENGTH for line in chunk.split("\n")):
        return None
    text = _STRING.sub('"s"', chunk)
    if "\\" in text or not text.isascii():
        return None  # a backslash or wide text outside the literals: check the chunk itself
    text = _REPEAT.sub(r"\1", _NAME.sub("x", text))
    text = _pad_hugs(text)
    if '"""' in text.partition("def ")[0] or "\n    " not in text:
        return text  # a module header (docstring) or no body: as it is
    out: list[str] = []
    seen: set[str] = set()
    group: list[str] = []
    depth = 0
    for line in text.split("\n"):
        group.append(line)
        depth += line.count("(") + line.count("[") - line.count(")") - line.count("]")
        if depth:
            continue
        statement = "\n".join(group)
        group = []
        if statement.startswith("    ") and not statement.startswith("     "):
            if statement in seen:
                continue
            seen.add(statement)
        out.append(statement)
    out.extend(group)
    return "\n".join(out)


def _pad_hugs(text: str) -> str:
    """Widen the middle line of every `head(\n    items\n)` to exactly 88 columns.

    black chooses that layout when the joined line is too long and the items fit on one line; in
    the real chunk both hold, and in the shape they hold again only if the middle line is as wide
    as it may be (placeholders are shorter than the real text).
    """
    lines = text.split("\n")
    for i in range(1, len(lines) - 1):
        before, middle, after = lines[i - 1], lines[i], lines[i + 1]
        if not before.endswith("(") or middle.endswith(","):
            continue
        indent = len(before) - len(before.lstrip(" "))
        if (
            not after.startswith(" " * indent + ")")
            or after[indent + 1 : indent + 2] == ","
        ):
            continue
        room = LINE_LENGTH - len(middle)
        at = middle.find('"x"')
        if at >= 0:
            lines[i] = middle[: at + 2] + "x" * room + middle[at + 2 :]
        else:
            lines[i] = middle + "x" * room if middle.endswith("x") else middle
    return "\n".join(lines)


def statements(tree: ast.Module) -> tuple[str, ...]:
    """Top-level statement kinds; a leading string expression is `doc`."""
    kinds = []
    for i, node in enumerate(tree.body):
        if (
            i == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            kinds.append("doc")
        else:
            kinds.append(type(node).__name__)
    return tuple(kinds)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Marks a digest in `known` whose text parses to allowed statements but which black reformats (a
# shape black does not keep as it is: the chunk itself is checked next). Without it such a shape
# ran black again on every generate: one run per machine, ~0.3 s of a one-row regenerate of a
# 20-machine plan.
_CHANGED = "!"


class BlackCheck:
    """Verifies chunks; remembers (by SHA-256) the shapes and texts already proven good, and
    those black would change.

    `known` may come from a cache of an earlier run with the same sl2s and black versions.
    """

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known: set[str] = set(known)
        # Rendered wiring chunks already checked (see rendercache.py); a session may replace it
        # with one backed by its cache directory.
        self.rendered = RenderCache()
        self.black_runs = 0
        self.parses = 0

    def _good(self, text: str, allowed: frozenset[str], where: str) -> bool:
        digest = _digest(" ".join(sorted(allowed)) + "\n" + text)
        if digest in self.known:
            return True
        if (
            _CHANGED + digest in self.known
        ):  # black changes it: known too, not run again
            return False
        self.parses += 1
        try:
            tree = ast.parse(text)
        except SyntaxError as error:  # a bug in sl2s, never the user's: say so plainly
            raise Sl2sError(
                Diagnostic(
                    where, 0, f"sl2s rendered invalid Python ({error.msg}):\n{text}"
                )
            ) from None
        kinds = statements(tree)
        if not kinds or any(k not in allowed for k in kinds):
            raise Sl2sError(
                Diagnostic(
                    where, 0, f"sl2s rendered unexpected top-level statements {kinds}"
                )
            )
        self.black_runs += 1
        if format_str(text) == text:
            self.known.add(digest)
            return True
        self.known.add(_CHANGED + digest)
        return False

    def ensure(self, chunk: str, allowed: Iterable[str], where: str = "sl2s") -> str:
        """`chunk` if it parses to `allowed` statements and black leaves it as it is; else black's
        (stable) formatting of it. Raises Sl2sError when the chunk does not parse."""
        allowed = frozenset(allowed)
        key = shape(chunk)
        if key is not None and self._good(key, allowed, where):
            return chunk
        if self._good(chunk, allowed, where):
            return chunk
        formatted = format_str(chunk)
        if not self._good(
            formatted, allowed, where
        ):  # pragma: no cover - black is idempotent
            raise Sl2sError(Diagnostic(where, 0, "black does not reach a fixed point"))
        return formatted


def format_str(text: str) -> str:
    import black  # imported on first use: a no-op run never needs it

    return black.format_str(text, mode=black.Mode(line_length=LINE_LENGTH))
