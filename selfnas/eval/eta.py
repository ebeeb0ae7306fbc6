"""The time an evaluation has left, from the rate it has shown so far.

:class:`EvalEta` is a :class:`~selfnas.eval.probes.ProbeProgress` that passes every report on
unchanged and, at most every ``every`` seconds, logs one line with the time left: the images still
to embed at the embedding rate measured so far (the feature phases share one rate: they run the
same backbone), or, in a later phase (kNN, linear probe), its remaining units at that phase's own
rate. The phases after the current one that have not run yet are named, not timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from selfnas.eval.probes import ProbeProgress
from selfnas.render.durations import duration

#: seconds between two lines of time left
ETA_EVERY_S = 30.0


class EvalEta:
    """Wraps ``inner`` (or nothing) and logs the time left through ``log``.

    images: how many images the evaluation embeds in all (bank and every held-out split).
    clock: seconds, monotonic (a test passes its own). every: seconds between two lines; the first
    line comes as soon as a rate is known."""

    def __init__(
        self,
        inner: ProbeProgress | None,
        log: Callable[[str], None],
        images: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = ETA_EVERY_S,
    ) -> None:
        self.inner, self.log, self.images = inner, log, images
        self.clock, self.every = clock, every
        self._embedded = 0  # images of the feature phases that finished
        self._embed_start: float | None = None  # when the first image was handed to the backbone
        self._phase: str | None = None
        self._phase_start = 0.0
        self._said: float | None = None  # when the last line was logged

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.inner is not None:
            self.inner(phase, done, total)
        now = self.clock()
        if phase != self._phase:
            self._phase, self._phase_start = phase, now
        features = phase.startswith("features")
        if features and self._embed_start is None:
            self._embed_start = now
        if 0 < done < total and (self._said is None or now - self._said >= self.every):
            left = self._left(phase, done, total, now)
            if left is not None:
                self.log(left)
                self._said = now
        if features and done >= total:
            self._embedded += total

    def _left(self, phase: str, done: int, total: int, now: float) -> str | None:
        """The line of time left, or None while no time has passed to measure a rate on."""
        if phase.startswith("features"):
            assert self._embed_start is not None
            embedded, spent = self._embedded + done, now - self._embed_start
            if spent <= 0:
                return None
            rate = embedded / spent
            remaining = max(0, self.images - embedded)
            return (
                f"eta {duration(remaining / rate)} to embed the remaining {remaining:,} of "
                f"{self.images:,} images ({rate:,.0f} images/s), then kNN and the linear probe"
            )
        spent = now - self._phase_start
        if spent <= 0:
            return None
        left = (total - done) * spent / done
        return f"eta {duration(left)} for the {phase} ({done:,} of {total:,} done)"
