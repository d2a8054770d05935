"""The placeholder grammar of log templates: parse, render, unparse (pure; the runtime uses it).

- A placeholder is a sigil, `:` (field) or `#` (secret), followed by a name `[^\\W\\d]\\w*`, where
  the sigil is at a *placeholder position*: the start of the text, or after a character that is
  neither a word character nor `:` / `#`. So `http://x`, `10:30`, `a:b`, `C#`, `#1`, `key::value`
  are text.
- Escape: at a placeholder position, a run of k >= 2 equal sigils followed by a name is the literal
  text of k - 1 sigils and the name: `::name` is the text `:name`, `:::name` is `::name`.
- The name is normalised (sl2s.names): `:userName` is the field `user_name`.

Rendering (`render`): a field's value is shown as the string itself for `str`, otherwise as compact
JSON (`42`, `true`, `null`, `["a", "b"]`), so a message reads the same before and after the context
crossed a machine boundary as JSON. Secrets are shown as `***` (unless `redact=False`). A field
that is missing from the mapping is shown visibly as `<unset:name>` (the `unset` pattern, where
`{name}` stands for the field's name), never as an empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from sl2s.model import Placeholder, TemplatePart
from sl2s.names import identifier_or_none

SIGILS = ":#"
REDACTED = "***"
UNSET = "<unset:{name}>"

_NAME = re.compile(r"[^\W\d]\w*")
_WORD = re.compile(r"\w")


class TemplateError(ValueError):
    """A placeholder whose name gives no usable identifier (e.g. `:日本`)."""

    def __init__(self, spelling: str) -> None:
        self.spelling = spelling
        super().__init__(
            f"placeholder {spelling!r} has no letters or digits usable in an identifier"
        )


def _at_placeholder_position(text: str, i: int) -> bool:
    if i == 0:
        return True
    before = text[i - 1]
    return before not in SIGILS and not _WORD.match(before)


# A sigil run at a placeholder position (not after a word character or a sigil) followed by a
# name. Only the first sigil of a run of sigils can be at a placeholder position, and a run of one
# sigil followed by something other than a name is text, so these matches are all that `parse`
# needs to look at; everything between them is literal text.
_CANDIDATE = re.compile(r"(?<![\w:#])(:+|#+)([^\W\d]\w*)")


@lru_cache(maxsize=65536)
def _placeholder(spelling: str) -> Placeholder:
    """The placeholder written `spelling` (one sigil and a name); TemplateError when unusable.
    Placeholders are immutable values, so one object serves every template that spells it.
    """
    normalised = identifier_or_none(spelling[1:])
    if normalised is None:
        raise TemplateError(spelling)
    return Placeholder(name=normalised, secret=spelling[0] == "#", spelling=spelling)


@lru_cache(maxsize=65536)
def parse(text: str) -> tuple[TemplatePart, ...]:
    """Split a log template into literal text and placeholders (adjacent text is merged)."""
    if ":" not in text and "#" not in text:
        return (text,) if text else ()
    parts: list[TemplatePart] = []
    literal: list[str] = []
    i = 0
    for match in _CANDIDATE.finditer(text):
        start, end = match.span()
        sigils = match.group(1)
        if len(sigils) > 1:  # escape: drop one sigil, the name is text
            literal.append(text[i:start])
            literal.append(text[start + 1 : end])
            i = end
            continue
        placeholder = _placeholder(match.group())
        literal.append(text[i:start])
        before = "".join(literal)
        if before:
            parts.append(before)
        literal = []
        parts.append(placeholder)
        i = end
    literal.append(text[i:])
    rest = "".join(literal)
    if rest:
        parts.append(rest)
    return tuple(parts)


def _as_parts(template: str | Iterable[TemplatePart]) -> tuple[TemplatePart, ...]:
    return parse(template) if isinstance(template, str) else tuple(template)


def show_value(value: object) -> str:
    """How a field value appears in a rendered message."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def render(
    template: str | Iterable[TemplatePart],
    fields: Mapping[str, object],
    *,
    unset: str = UNSET,
    redact: bool = True,
) -> str:
    """The message of a template with `fields` filled in (secrets `***`, missing `<unset:name>`)."""
    out: list[str] = []
    for part in _as_parts(template):
        if isinstance(part, str):
            out.append(part)
        elif part.name not in fields:
            out.append(unset.replace("{name}", part.name))
        elif part.secret and redact:
            out.append(REDACTED)
        else:
            out.append(show_value(fields[part.name]))
    return "".join(out)


def _escape(literal: str, previous: str) -> str:
    """Write literal text so that `parse` reads it back as text (double sigils where needed)."""
    out: list[str] = []
    i, n = 0, len(literal)
    context = previous + literal
    offset = len(previous)
    while i < n:
        c = literal[i]
        if c in SIGILS and _at_placeholder_position(context, offset + i):
            j = i
            while j < n and literal[j] == c:
                j += 1
            if _NAME.match(literal, j):
                out.append(c)  # one more sigil turns the run into an escape
            out.append(literal[i:j])
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def unparse(parts: Iterable[TemplatePart]) -> str:
    """Template text that parses back to `parts` (placeholders are written with their names).

    ValueError when the parts cannot be written unambiguously: a placeholder directly after a word
    character or a sigil, or followed by a word character.
    """
    merged: list[TemplatePart] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    out = ""
    previous = ""
    for part in merged:
        if isinstance(part, str):
            if previous == "placeholder" and part and _WORD.match(part[0]):
                raise ValueError(
                    f"text {part!r} would continue the placeholder before it"
                )
            out += _escape(part, out[-1:])
            previous = "text"
        else:
            if out and not _at_placeholder_position(out + ":", len(out)):
                raise ValueError(f"placeholder {part.name!r} cannot follow {out[-1]!r}")
            out += (SIGILS[1] if part.secret else SIGILS[0]) + part.name
            previous = "placeholder"
    return out
