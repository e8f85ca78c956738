"""A daemon thread that runs a few passes every period until stopped; a failing pass is logged, never fatal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs each named pass now and then every `period_s` seconds, in one daemon thread."""

    def __init__(self, name: str, period_s: float, passes: dict[str, Callable[[], object]]):
        self._period_s, self._passes = period_s, passes
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass under way and wait for the thread."""
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            for what, run_pass in self._passes.items():
                try:
                    run_pass()
                except Exception:
                    # The database or broker may be restarting; the next period tries again.
                    log.warning("%s failed", what, exc_info=True)
            if self._stopped.wait(self._period_s):
                return
