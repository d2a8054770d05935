"""What a step prints, masked: a text-stream wrapper that sl2s commands put around stdout and stderr.

sl2s does not capture a step's `print` (it is the process's own output, not an event), but a
command of sl2s that runs steps (`sl2s run`) writes that output as its own, so it must not show a
secret. `masked_std_streams()` wraps `sys.stdout` and `sys.stderr` for its duration; a `write`
made while a step runs (found like a log record's step: `logcapture.current_step`, frames of this
thread only) has that run's secret values masked by the rule of `sl2s.runtime.redact`. Writes made
outside a step pass through unchanged, and nothing is buffered: each `write` call is masked on its
own, so a secret split over two writes by the step itself is not recognised.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sl2s.runtime.core import logcapture


class MaskingStream:
    """A text stream that masks the running step's secrets in what is written to it."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text):
        if type(text) is str and text:
            current = logcapture.current_step(sys._getframe(1))
            if current is not None:
                self._stream.write(current[0]._scrub(text))
                return len(text)  # what the caller wrote, as io streams answer
        return self._stream.write(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):  # flush, fileno, encoding, isatty, buffer, ...
        return getattr(self._stream, name)


@contextmanager
def masked_std_streams() -> Iterator[None]:
    """Wrap `sys.stdout` and `sys.stderr` in a `MaskingStream` for the duration."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskingStream(saved[0]), MaskingStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
