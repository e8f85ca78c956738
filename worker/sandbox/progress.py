"""A running audit's progress, from the sandboxed child to its parent, through a pipe of its own: short lines
"PHASE PROGRESS\\n", written as the engine goes. The answer pipe carries one JSON at the end; this one lets the
worker say where an audit is while it runs.

The child is untrusted. It writes without ever waiting (a full pipe drops the line) and at most every
SEND_INTERVAL_S within a phase. The parent reads at most READ_BYTES at a time, drops a line longer than
LINE_BYTES, and passes on only a known phase, in order, with a finite progress in 0..1 that never goes back.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from gradaudit.schema import PHASES

OnProgress = Callable[[str, float], None]  # (phase, progress): called in the parent; must not block

LINE_BYTES = 40
READ_BYTES = 4096
SEND_INTERVAL_S = 0.2


class ProgressChannel:
    """The pipe and both of its ends' rules: `open` in the parent before the fork, `send` in the child,
    `receive` in the parent whenever the read end is readable."""

    def __init__(self, on_progress: OnProgress, clock: Callable[[], float] = time.monotonic):
        self._on_progress, self._clock = on_progress, clock
        self.read_fd = self.write_fd = -1
        self._partial = b""
        self._accepted: tuple[int, float] = (-1, -1.0)  # phase index, progress
        self._sent: tuple[str | None, float] = (None, -math.inf)  # phase, when

    def open(self) -> None:
        """Create the pipe (in the parent, before forking)."""
        self.read_fd, self.write_fd = os.pipe()

    def in_child(self) -> None:
        """The child's side: the read end closed, writes never wait."""
        os.close(self.read_fd)
        os.set_blocking(self.write_fd, False)

    def in_parent(self) -> None:
        """The parent's side: the write end closed, so the read end sees the end of the file when the child exits."""
        os.close(self.write_fd)

    def close(self) -> None:
        """Close the parent's read end."""
        os.close(self.read_fd)

    def send(self, phase: str, progress: float) -> None:
        """In the child: tell the parent, unless this phase was sent moments ago or the pipe is full."""
        now = self._clock()
        last_phase, last_time = self._sent
        if phase == last_phase and now - last_time < SEND_INTERVAL_S:
            return
        try:
            os.write(self.write_fd, f"{phase} {progress:.4f}\n".encode("ascii"))
        except OSError:  # full (BlockingIOError) or closed: progress is a courtesy, never a reason to stop
            return
        self._sent = (phase, now)

    def receive(self) -> bool:
        """In the parent: read what is there and pass on each acceptable line; False at the end of the file."""
        chunk = os.read(self.read_fd, READ_BYTES)
        if not chunk:
            return False
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > LINE_BYTES:
            self._partial = b""
        for line in lines:
            self._accept(line)
        return True

    def _accept(self, line: bytes) -> None:
        parsed = parse_line(line)
        if parsed is None:
            return
        index, progress = PHASES.index(parsed[0]), parsed[1]
        last_index, last_progress = self._accepted
        if index < last_index or progress < last_progress or (index, progress) == self._accepted:
            return
        self._accepted = (index, progress)
        self._on_progress(parsed[0], progress)


def parse_line(line: bytes) -> tuple[str, float] | None:
    """(phase, progress) from a line the child wrote, or None for anything else."""
    if len(line) > LINE_BYTES:
        return None
    phase, _, number = line.decode("ascii", errors="replace").partition(" ")
    if phase not in PHASES:
        return None
    try:
        progress = float(number)
    except ValueError:
        return None
    return (phase, progress) if math.isfinite(progress) and 0.0 <= progress <= 1.0 else None
