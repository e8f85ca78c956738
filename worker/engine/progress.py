"""Where a running audit is: the engine names the phase it enters and how far through it is, and whoever runs the
audit (the sandbox's child, which passes it to the worker) listens. Outside `reporting` it is a no-op, so the
engine's functions stay plain and callable from tests and benchmarks.

Progress is one number for the whole audit, 0 to 1, that never goes back: each phase owns a span of it, and a
report of an earlier phase than the current one (a patched copy re-probed during verification) is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gradaudit.schema import PHASES

Reporter = Callable[[str, float], None]  # (phase, progress of the whole audit)

# Each phase's share of the whole: probing and verifying take the time. An audit without verification jumps from
# the end of diagnosing to 1 when it succeeds.
_SPANS = {"loading": (0.0, 0.05), "checking_parity": (0.05, 0.1), "converting": (0.1, 0.15),
          "probing": (0.15, 0.45), "diagnosing": (0.45, 0.5), "verifying": (0.5, 0.99)}


class Tracker:
    """One audit's phases: the current one, the progress reported so far, and the seconds each phase took."""

    def __init__(self, reporter: Reporter | None, clock: Callable[[], float] = time.monotonic):
        self._reporter, self._clock = reporter, clock
        self.phase: str | None = None
        self.progress = 0.0
        self._entered = 0.0
        self._seconds: dict[str, float] = {}
        self._muted = 0

    def report(self, phase: str, fraction: float = 0.0) -> None:
        """The audit is `fraction` (0-1) through `phase`."""
        if self._muted or PHASES.index(phase) < self._index():
            return
        if phase != self.phase:
            self._close()
            self.phase, self._entered = phase, self._clock()
        start, end = _SPANS[phase]
        self.progress = max(self.progress, round(start + (end - start) * min(max(fraction, 0.0), 1.0), 4))
        if self._reporter is not None:
            self._reporter(phase, self.progress)

    @contextmanager
    def muted(self) -> Iterator[None]:
        """Ignore the reports made inside."""
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    def seconds(self) -> dict[str, float]:
        """Seconds spent in each phase entered so far, the current one up to now."""
        spent = dict(self._seconds)
        if self.phase is not None:
            spent[self.phase] = spent.get(self.phase, 0.0) + self._clock() - self._entered
        return {phase: round(value, 3) for phase, value in spent.items()}

    def _index(self) -> int:
        return PHASES.index(self.phase) if self.phase is not None else -1

    def _close(self) -> None:
        if self.phase is not None:
            self._seconds[self.phase] = self._seconds.get(self.phase, 0.0) + self._clock() - self._entered


_current: Tracker | None = None


@contextmanager
def reporting(reporter: Reporter | None = None) -> Iterator[Tracker]:
    """Track the phases of the audit run inside, telling reporter of each step."""
    global _current
    previous, _current = _current, Tracker(reporter)
    try:
        yield _current
    finally:
        _current = previous


@contextmanager
def muted() -> Iterator[None]:
    """Phases reported inside are not the audit's own (a patched copy probed during verification)."""
    if _current is None:
        yield
        return
    with _current.muted():
        yield


def report(phase: str, fraction: float = 0.0) -> None:
    """The running audit is `fraction` through `phase` (one of gradaudit.schema.PHASES); a no-op when nobody
    tracks it."""
    if _current is not None:
        _current.report(phase, fraction)
