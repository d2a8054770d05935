"""Crash details of a failing step: where in the user's code it raised, and what its frames held.

`details(tb, …)` walks a traceback (already trimmed to start at the step function) and returns

- `raised_at`: `file:line` of the innermost frame in the user's code — not the standard library,
  site-/dist-packages or sl2s itself — so an `IndexError` raised inside `random.py` names the
  user's line that called `random.choice`;
- `frames`: the user's frames, outermost first (at most `MAX_FRAMES`, the innermost kept): file,
  line, function, the source line, and the frame's local variables as `repr` texts, each cut to
  `MAX_REPR` characters, at most `MAX_LOCALS` per frame;
- `arguments`: the step function's parameters (their values when it raised), the same way.

Secrets are masked before anything leaves this module: a local or argument named like a secret
field of the flow is `***`, and every text goes through the run's `scrub` (masking secret values
wherever they appear, docs/runtime.md "Secrets"). Pure apart from reading the frames; never
raises (a `repr` that fails is shown as `<repr failed: …>`).
"""

from __future__ import annotations

import linecache
import os
import re
import reprlib
import sysconfig
from collections.abc import Callable, Iterable

MASK = "***"
MAX_FRAMES = 5
MAX_LOCALS = 30
MAX_REPR = 200

_LIBRARY = ("site-packages", "dist-packages", "<frozen", "<string>")
_SL2S = ("/sl2s/runtime/", "/sl2s/observe/")
_ANY_STDLIB = re.compile(r"/lib/python\d+(\.\d+)?/|/Lib/[^/]+\.py$|^<")


def _stdlib_dirs() -> tuple[str, ...]:
    found = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            found.add(os.path.normcase(os.path.realpath(path)) + os.sep)
    return tuple(found)


_STDLIB = _stdlib_dirs()


def is_user_file(path: str) -> bool:
    """Whether a frame's file is the user's code (error fingerprints use this rule too)."""
    normalised = path.replace("\\", "/")
    if any(m in normalised for m in _LIBRARY) or any(m in normalised for m in _SL2S):
        return False
    if _ANY_STDLIB.search(normalised):
        return False
    real = os.path.normcase(os.path.realpath(path)) if os.path.isabs(path) else path
    return not any(real.startswith(d) for d in _STDLIB)


def _repr_limits() -> reprlib.Repr:
    limits = reprlib.Repr()
    limits.maxlevel = 3
    # texts are not cut here: a cut before masking could leave part of a secret (cut after)
    limits.maxstring = limits.maxother = 1_000_000
    limits.maxlist = limits.maxtuple = limits.maxset = limits.maxdict = 20
    limits.maxlong = 60
    return limits


_REPR = _repr_limits()


def shown(value: object, scrub: Callable[[str], str], limit: int = MAX_REPR) -> str:
    """`repr(value)` (a long list or string is not repr'd whole first), secrets masked, cut to
    `limit` characters (`…` marks the cut)."""
    try:
        text = _REPR.repr(value)
    except Exception as error:  # noqa: BLE001 - a user's __repr__ may fail
        text = f"<repr failed: {type(error).__name__}>"
    text = scrub(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _locals(
    names: Iterable[tuple[str, object]],
    secret_names: frozenset[str] | set[str],
    scrub: Callable[[str], str],
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in names:
        if name.startswith("__") or name.startswith("@"):
            continue
        if len(out) >= MAX_LOCALS:
            out["…"] = "more locals not shown"
            break
        out[scrub(name)] = MASK if name in secret_names else shown(value, scrub)
    return out


def details(
    tb,
    *,
    relative: Callable[[str], str],
    scrub: Callable[[str], str],
    secret_names: frozenset[str] | set[str] = frozenset(),
) -> dict:
    """`{"raised_at", "frames", "arguments"}` for the traceback `tb` (outermost = the step)."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    if not frames:
        return {"raised_at": None, "frames": [], "arguments": {}}
    user = [(f, line) for f, line in frames if is_user_file(f.f_code.co_filename)]
    innermost = (user or frames)[-1]
    raised_at = f"{relative(innermost[0].f_code.co_filename)}:{innermost[1]}"
    step_frame = frames[0][0]
    code = step_frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
    params = code.co_varnames[:count]
    local = step_frame.f_locals
    arguments = _locals(
        ((n, local[n]) for n in params if n in local), secret_names, scrub
    )
    shown_frames = []
    for frame, line in user[-MAX_FRAMES:]:
        filename = frame.f_code.co_filename
        source = linecache.getline(filename, line).strip()
        shown_frames.append(
            {
                "file": relative(filename),
                "line": line,
                "function": frame.f_code.co_name,
                "code": scrub(source),
                "locals": _locals(frame.f_locals.items(), secret_names, scrub),
            }
        )
    return {"raised_at": raised_at, "frames": shown_frames, "arguments": arguments}


def safe_details(tb, **options) -> dict | None:
    """`details`, or None when anything about the frames is unexpected (never breaks a flow)."""
    try:
        return details(tb, **options)
    except (
        Exception
    ):  # noqa: BLE001 - crash details are a courtesy; the failure is reported
        return None
