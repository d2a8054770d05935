"""Identifier normalisation and step slugs (pure; the runtime imports this module).

Every name taken from a plan (flow, machine, field, step id) becomes an identifier that is a valid,
non-keyword Python identifier and a safe file name on every platform:

1. NFKC (fullwidth `ｗｅｂ` is `web`), invisible format characters (zero-width space, joiners, bidi
   marks) are dropped, accents are stripped (`é` is `e`), a few letters are transliterated
   (`ß` is `ss`, `æ` is `ae`, ...).
2. camelCase and PascalCase are split (`userName` is `user_name`, `HTTPServer` is `http_server`),
   everything is lower-cased.
3. Every run of characters other than ASCII letters and digits becomes one `_`; leading and trailing
   `_` are dropped.
4. A leading digit gets a `_` prefix (`1st` is `_1st`).
5. Python keywords, soft keywords, builtins and Windows device names get a `_` suffix
   (`class` is `class_`, `id` is `id_`, `con` is `con_`).
6. Longer than 60 characters: the first 51 characters, `_`, and the first 8 hex digits of the
   SHA-256 of the full identifier.

The builtin list is frozen here (not read from the running interpreter) so that the same plan gives
the same identifiers on every Python version and with or without `site`.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import unicodedata
from functools import lru_cache

MAX_LENGTH = 60
_HEAD_LENGTH = 51

# Soft keywords of Python 3.10-3.13 (`type` since 3.12) and `_`, which `match` treats specially.
SOFT_KEYWORDS = frozenset({"match", "case", "type", "_"})

# Lower-case names in dir(builtins) of CPython 3.10-3.13, including the ones `site` adds.
# tests/test_names.py checks that the running interpreter adds nothing new.
BUILTINS = frozenset("""
    abs aiter all anext any ascii bin bool breakpoint bytearray bytes callable chr classmethod
    compile complex copyright credits delattr dict dir divmod enumerate eval exec exit filter float
    format frozenset getattr globals hasattr hash help hex id input int isinstance issubclass iter
    len license list locals map max memoryview min next object oct open ord pow print property
    quit range repr reversed round set setattr slice sorted staticmethod str sum super tuple type
    vars zip
    """.split())

# Names that cannot be files or directories on Windows (with any extension).
WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(10)]
    + [f"lpt{i}" for i in range(10)]
)

RESERVED = frozenset(keyword.kwlist) | SOFT_KEYWORDS | BUILTINS | WINDOWS_DEVICES

# Letters that NFKD does not decompose into an ASCII base letter.
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "Ae",
        "œ": "oe",
        "Œ": "Oe",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "Th",
        "ı": "i",
    }
)

_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_OTHER = re.compile(r"[^a-z0-9]+")


class IdentifierError(ValueError):
    """The text has nothing usable as an identifier (no letters or digits after normalisation)."""


def _ascii(text: str) -> str:
    if text.isascii():
        # NFKC and NFKD leave ASCII as it is; no ASCII character is a format character, in the
        # transliteration table or combining.
        return text
    text = unicodedata.normalize("NFKC", text)
    # Format characters (Cf: zero-width space/joiners, bidi marks, soft hyphen) are invisible: drop
    # them, so that names that look the same normalise the same (and then collide visibly).
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = text.translate(_TRANSLITERATE)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _snake(text: str) -> str:
    # search first: a sub with a template replacement costs far more than a search, even when
    # nothing matches (the common case)
    if _CAMEL_ACRONYM.search(text):
        text = _CAMEL_ACRONYM.sub(r"\1_\2", text)
    if _CAMEL.search(text):
        text = _CAMEL.sub(r"\1_\2", text)
    return _OTHER.sub("_", text.lower()).strip("_")


def _shorten(name: str) -> str:
    if len(name) <= MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("ascii")).hexdigest()[:8]
    return f"{name[:_HEAD_LENGTH]}_{digest}"


@lru_cache(maxsize=65536)
def identifier_or_none(text: str) -> str | None:
    """The normalised identifier of `text`, or None when nothing usable is left."""
    name = _snake(_ascii(text))
    if not name:
        return None
    if name[0].isdigit():
        name = "_" + name
    if name in RESERVED:
        name += "_"
    return _shorten(name)


def identifier(text: str) -> str:
    """The normalised identifier of `text`; IdentifierError when nothing usable is left."""
    name = identifier_or_none(text)
    if name is None:
        raise IdentifierError(
            f"{text!r} has no letters or digits usable in an identifier"
        )
    return name


def step_slug_or_none(template: str) -> str | None:
    """The default step id of a log template, or None when the text gives nothing usable.

    The slug is the identifier of the whole log text: placeholder sigils (`:`, `#`, doubled
    escapes) are punctuation like any other, so each placeholder contributes its normalised name.
    """
    return identifier_or_none(template)


def step_slug(template: str) -> str:
    """The default step id of a log template.

    `"Received request to login as :username"` is `received_request_to_login_as_username`.
    Raises IdentifierError when the text gives nothing usable (the plan then needs an `id`).
    """
    slug = step_slug_or_none(template)
    if slug is None:
        raise IdentifierError(f"log text {template!r} gives no usable step id")
    return slug
