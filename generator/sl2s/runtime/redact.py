"""Masking secret values out of text and JSON data (the rule is stated in docs/runtime.md, "Secrets").

A `Masker` holds the texts of a flow's secret values and replaces every *token occurrence* of one of
them by the fixed `MASK`:

- An occurrence is masked unless masking it would cut a word in two: where the secret's first
  character is a word character (a letter, a digit or `_`, as `str.isalnum()` says), the character
  before the occurrence must not be one; likewise for its last character and the character after.
  A secret that begins or ends with any other character (`-x`, `"pw"`, `!`) has no condition on
  that side. So the password `x` leaves `IndexError` alone but masks `x` in `got x, want y`.
- Every occurrence becomes exactly `***`, whatever the secret's length.
- When occurrences of several secrets overlap, the leftmost wins, and at one position the longest
  (a secret containing another is masked whole).
- Each secret is also looked for in the forms a value takes when Python or JSON quotes it: its
  `repr()` and `ascii()` whole (quotes included, so the quote Python chose says nothing about the
  secret) and their bodies, and the body of its JSON string; so `KeyError('a\\nb')` in a
  traceback becomes `KeyError(***)`.
- Values that are empty or only whitespace are not looked for in text (they would mask every
  space); their own fields are still masked by name.

`Masker.value` applies the same to JSON data: strings (dict keys included) are masked as text, a
number whose text contains a secret becomes `***`, lists and dicts are copied only where something
changed (the common case returns the same object, so the runtime's hot path stays cheap).

No regular expressions: the common case (no secret in the text) is one `in` test per secret (in C;
its quoted forms contain it, except where quoting escaped a character), and nothing caches secret
values beyond the `Masker` the caller holds. `Masker.stale` is the same test on JSON bytes, which
the runtime makes once per step over the serialised fields before masking anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

MASK = "***"


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def secret_texts(value: object) -> list[str]:
    """The texts a secret field's value contributes: itself (a string or a number's text), or the
    leaves of a list or dict. Booleans and None are not secrets by value."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            out.append(v)
        elif t is int or t is float:
            out.append(str(v))
        elif t is dict:
            stack.extend(v.values())
        elif t is list or t is tuple:
            stack.extend(v)
        elif isinstance(v, str):
            out.append(str(v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))
    return out


def _fewest(forms):
    """The shortest forms such that every form contains one of them (as a substring)."""
    kept: list = []
    for form in sorted(set(forms), key=len):
        if not any(k in form for k in kept):
            kept.append(form)
    return tuple(kept)


def _forms(text: str) -> set[str]:
    """The secret, the body of its JSON string, and its `repr()`/`ascii()` with and without their
    quotes (with: so that `KeyError('pw')` and `KeyError("it's")` both become `KeyError(***)`,
    whichever quote the secret made Python choose)."""
    forms = {text, repr(text), ascii(text), repr(text)[1:-1], ascii(text)[1:-1]}
    forms.add(orjson.dumps(text).decode()[1:-1])
    return forms


class Masker:
    """Masks the given secret texts in text and JSON data (see the module docstring)."""

    __slots__ = ("texts", "needles", "_checks", "_probes", "encoded")

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = frozenset(t for t in texts if t and not t.isspace())
        forms: set[str] = set()
        for text in self.texts:
            forms |= _forms(text)
        # longest first: at one position the longest secret wins
        self.needles: tuple[str, ...] = tuple(sorted(forms, key=lambda s: (-len(s), s)))
        self._checks = tuple(
            (n, len(n), _is_word(n[0]), _is_word(n[-1])) for n in self.needles
        )
        # what to look for before anything else: the fewest forms that every form contains
        self._probes = _fewest(self.needles)
        # the same as they appear inside JSON written by orjson, which escapes character by
        # character, so a string holding a form holds its encoding once serialised (`stale`)
        self.encoded = _fewest(orjson.dumps(n)[1:-1] for n in self.needles)

    def __bool__(self) -> bool:
        return bool(self.needles)

    def __repr__(self) -> str:  # never the values
        return f"<Masker of {len(self.needles)} secret forms>"

    def text(self, s: str) -> str:
        """`s` with every token occurrence of a secret replaced by `***` (`s` itself if none)."""
        for probe in self._probes:
            if probe in s:
                return self._sub(s)
        return s

    def stale(self, data: bytes) -> bool:
        """Whether JSON bytes may hold a secret (a cheap check before masking again: any
        occurrence, even inside a word, says yes)."""
        for needle in self.encoded:
            if data.find(needle) >= 0:  # (`in` on bytes is twice as slow)
                return True
        return False

    def _sub(self, s: str) -> str:
        spans = []
        size = len(s)
        for needle, n, left, right in self._checks:
            i = s.find(needle)
            while i >= 0:
                end = i + n
                if not (
                    (left and i > 0 and _is_word(s[i - 1]))
                    or (right and end < size and _is_word(s[end]))
                ):
                    spans.append((i, -n))
                i = s.find(needle, i + 1)
        if not spans:
            return s
        spans.sort()
        out, at = [], 0
        for start, neg in spans:
            if start < at:
                continue  # overlaps an occurrence already masked
            out.append(s[at:start])
            out.append(MASK)
            at = start - neg
        out.append(s[at:])
        return "".join(out)

    def value(self, v: Any) -> Any:
        """JSON data with secrets masked; the same object when nothing changed."""
        t = type(v)
        if t is str:
            return self.text(v)
        if t is dict:
            changed = None
            for key, item in v.items():
                k = self.text(key) if type(key) is str else key
                x = self.value(item)
                if k is not key or x is not item:
                    changed = True
                    break
            if changed is None:
                return v
            out = {}
            for key, item in v.items():
                out[self.text(key) if type(key) is str else key] = self.value(item)
            return out
        if t is list or t is tuple:
            items = [self.value(x) for x in v]
            if all(a is b for a, b in zip(items, v)):
                return v
            return items if t is list else tuple(items)
        if t is int or t is float:
            text = str(v)
            return MASK if self.text(text) is not text else v
        if isinstance(v, str):
            return self.text(str(v))
        return v

    def fields(self, fields: dict, secret_names: Iterable[str] = ()) -> dict:
        """A copy of a context: the named secret fields `***`, every other value masked."""
        names = set(secret_names)
        return {k: (MASK if k in names else self.value(v)) for k, v in fields.items()}


EMPTY = Masker(())


def masker_for(
    fields: dict, secret_names: Iterable[str], previous: Masker | None = None
) -> Masker:
    """The masker of the secret fields' values found in `fields`, and of the `previous` masker's
    (a value once secret stays masked, even after its field changed or was unset)."""
    texts: set[str] = set(previous.texts) if previous is not None else set()
    for name in secret_names:
        if name in fields:
            texts.update(t for t in secret_texts(fields[name]) if t and not t.isspace())
    if previous is not None and texts == previous.texts:
        return previous
    return Masker(texts) if texts else EMPTY


def mask_context(
    fields: dict, secret_names: Iterable[str], earlier: dict | None = None
) -> dict:
    """`fields` as shown outside its process: secret fields `***`, their values masked elsewhere,
    and so are the values the secret fields had in `earlier` (e.g. the flow's input)."""
    names = set(secret_names)
    previous = masker_for(earlier, names) if earlier else None
    return masker_for(fields, names, previous).fields(fields, names)
