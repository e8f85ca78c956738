"""How `submit --wait` shows a running audit on stderr: a progress bar redrawn in place on a terminal, and one line
per change of status or phase elsewhere (a CI log gets no carriage returns and no line per poll)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

BAR_WIDTH = 24


class WaitDisplay:
    """Called with the audit document at every poll."""

    def __init__(self, stream: TextIO, *, on_terminal: bool, clock: Callable[[], float] = time.monotonic):
        self._stream, self._on_terminal, self._clock = stream, on_terminal, clock
        self._started = clock()
        self._last: tuple[str, str | None] | None = None

    def __call__(self, audit: dict[str, Any]) -> None:
        status, phase = audit["status"], audit.get("phase")
        elapsed = self._clock() - self._started
        finished = status in ("succeeded", "failed")
        if self._on_terminal:
            end = "\n" if finished else ""
            self._write(f"\r{bar(audit.get('progress'), finished=status == 'succeeded')} {_where(status, phase):<28}"
                        f" {elapsed:6.1f}s{end}")
        elif (status, phase) != self._last:
            self._write(f"{elapsed:6.1f}s {_where(status, phase)}{_percent(audit.get('progress'), status)}\n")
        self._last = (status, phase)

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def bar(progress: float | None, *, finished: bool = False) -> str:
    """[#####.......]  40%"""
    share = 1.0 if finished else min(max(progress or 0.0, 0.0), 1.0)
    filled = round(share * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}"


def _where(status: str, phase: str | None) -> str:
    return f"{status}: {phase.replace('_', ' ')}" if status == "running" and phase else status


def _percent(progress: float | None, status: str) -> str:
    return f" ({progress:.0%})" if status == "running" and progress is not None else ""


class LocalPhases:
    """`gradaudit audit` on a terminal: its phases as a progress bar (called from the sandbox's reading thread),
    ended with a newline once the audit has returned."""

    def __init__(self, stream: TextIO):
        self._stream, self._drawn = stream, False
        self._display = WaitDisplay(stream, on_terminal=True)

    def __call__(self, phase: str, progress: float) -> None:
        self._drawn = True
        self._display({"status": "running", "phase": phase, "progress": progress})

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
