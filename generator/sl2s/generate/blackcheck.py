"""Cheap proof that rendered Python is black-stable, without running black over every line.

black costs ~0.75 ms per line; a large plan renders tens of thousands of lines. The templates emit
black's layout by construction, so what needs checking is the *shape* of each top-level chunk: the
chunk with every plain string literal replaced by `"s"` and every non-keyword name by `x`, and runs
of identical lines collapsed (black formats simple statements and bracket items line by line).
When every line of the real chunk fits in 88 columns, contains only ASCII and no backslash, black
treats the real chunk exactly as its shape — so black runs once per distinct shape (a few dozen for
any plan). Any other chunk is checked exactly (cached by content). A chunk black would change is
replaced by black's output, which is then checked to be stable itself.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Iterable

import black

from sl2s.generate.encode import LINE_LENGTH

MODE = black.Mode(line_length=LINE_LENGTH)

_STRING = re.compile(r'"""(?:[^"\\]|"(?!""))*"""|"[^"\\\n]*"')
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_KEEP = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)


def _string(match: re.Match) -> str:
    text = match.group(0)
    return text if text.startswith('"""') else '"s"'


def _name(match: re.Match) -> str:
    text = match.group(0)
    return text if text in _KEEP else "x"


def shape(chunk: str) -> str | None:
    """The chunk's shape, or None when only the chunk itself can stand for it."""
    if "\\" in chunk or not chunk.isascii():
        return None
    lines = chunk.split("\n")
    if any(len(line) > LINE_LENGTH for line in lines):
        return None
    text = _NAME.sub(_name, _STRING.sub(_string, chunk))
    out: list[str] = []
    for line in text.split("\n"):
        if not out or line != out[-1] or not line.strip():
            out.append(line)
    return "\n".join(out)


def format_str(text: str) -> str:
    return black.format_str(text, mode=MODE)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class BlackCheck:
    """Verifies chunks; remembers (by SHA-256) the shapes and texts already proven stable.

    `known` may come from a cache of an earlier run with the same black version.
    """

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known: set[str] = set(known)
        self.black_runs = 0

    def _stable(self, text: str) -> bool:
        digest = _digest(text)
        if digest in self.known:
            return True
        self.black_runs += 1
        if format_str(text) == text:
            self.known.add(digest)
            return True
        return False

    def ensure(self, chunk: str) -> str:
        """`chunk` if black leaves it as it is, else black's (stable) formatting of it."""
        key = shape(chunk)
        if key is not None and self._stable(key):
            return chunk
        if self._stable(chunk):
            return chunk
        formatted = format_str(chunk)
        self.black_runs += 1
        if format_str(formatted) != formatted:  # pragma: no cover - black is idempotent
            raise RuntimeError("black does not reach a fixed point on generated code")
        self.known.add(_digest(formatted))
        return formatted
