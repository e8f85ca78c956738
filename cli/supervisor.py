"""Keeps `serve`'s children alive: a child that dies is started again, after a delay that doubles while it
keeps dying and resets once it has stayed up a while."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol


class Child(Protocol):
    """What the supervisor needs of a process: subprocess.Popen's poll, terminate, kill and wait."""

    def poll(self) -> int | None: ...


def _say(message: str) -> None:
    print(f"gradaudit: {message}", file=sys.stderr, flush=True)


class Supervised:
    """One child process, started by `start`, restarted with exponential backoff whenever it exits."""

    def __init__(self, name: str, start: Callable[[], Child], *, first_delay_s: float = 0.5,
                 max_delay_s: float = 30.0, stable_after_s: float = 60.0, say: Callable[[str], None] = _say):
        self.name, self._start = name, start
        self._first_delay_s, self._max_delay_s, self._stable_after_s = first_delay_s, max_delay_s, stable_after_s
        self._say = say
        self._delay_s = first_delay_s
        self._restart_at: float | None = None
        self.process: Child | None = None
        self.restarts = 0

    def start(self) -> None:
        """Start the child now."""
        self.process = self._start()
        self._started_at = time.monotonic()

    def check(self, now: float | None = None) -> None:
        """Restart the child if it died and its delay has passed; call this often."""
        now = time.monotonic() if now is None else now
        if self.process is not None and self.process.poll() is None:
            if now - self._started_at >= self._stable_after_s:
                self._delay_s = self._first_delay_s
            return
        if self._restart_at is None:
            self._schedule(now, f"exited with code {self.process.poll() if self.process else None}")
        if now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            try:
                self.start()
            except Exception as failed:  # the next check tries again, later
                self.process = None
                self._schedule(now, f"did not start ({failed})")

    def _schedule(self, now: float, why: str) -> None:
        self._say(f"{self.name} {why}; restarting in {self._delay_s:g} s")
        self._restart_at = now + self._delay_s
        self._delay_s = min(self._delay_s * 2, self._max_delay_s)
