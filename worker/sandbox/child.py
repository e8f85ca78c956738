"""Fork a child from this (already warm) process, confine it, run one piece of work in it, and read back its
JSON answer through a pipe. The child's death is classified by cause; the parent always survives."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradaudit.errors import AuditError
from worker.sandbox.confine import confine, prepare_scratch
from worker.sandbox.outcome import classify_death, error_payload, memory_exceeded
from worker.sandbox.policy import SandboxPolicy

log = logging.getLogger(__name__)

Work = Callable[[tuple[Path, ...]], dict[str, Any]]  # the read paths as the child sees them -> a JSON-able answer
_CHUNK = 1 << 20


def run_in_child(work: Work, policy: SandboxPolicy) -> dict[str, Any]:
    """Run work in a confined child; return its answer, or {"error": {code, detail}} if it died or overran.
    The answer carries "sandbox": what confinement the child applied."""
    launch = _Launch(work, policy, prepare_scratch(policy))
    launch.start()
    try:
        launch.join()
    except BaseException:
        # Celery's soft time limit (or a shutdown) interrupts the wait: the child goes with it.
        launch.cancel()
        launch.join()
        raise
    return launch.answer


class _Launch(threading.Thread):
    """Forks from a thread of its own: GNU OpenMP keeps its thread pool per thread, and a child forked from a
    thread that ran a parallel region would wait forever for pool threads the fork did not copy. The thread
    lives until the child is reaped, as the child's parent-death signal follows the thread that forked it."""

    def __init__(self, work: Work, policy: SandboxPolicy, reads: tuple[Path, ...]):
        super().__init__(name="gradaudit-sandbox", daemon=True)
        self._work, self._policy, self._reads = work, policy, reads
        self._cancelled = threading.Event()
        self.answer: dict[str, Any] = error_payload("audit_crashed", "the audit's process never reported")

    def cancel(self) -> None:
        """Kill the child (now, or as soon as it exists)."""
        self._cancelled.set()

    def run(self) -> None:
        parent = os.getpid()
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            os.close(readable)
            _child(self._work, self._policy, self._reads, writable, parent)
        os.close(writable)
        try:
            data, overran = _read_answer(readable, time.monotonic() + self._policy.time_limit_s, self._cancelled)
        finally:
            os.close(readable)
        if overran or self._cancelled.is_set():
            _kill(pid)
        _, status, usage = os.wait4(pid, 0)
        self.answer = classify_death(status, usage, data, overran=overran, policy=self._policy)


def _child(work: Work, policy: SandboxPolicy, reads: tuple[Path, ...], writable: int, parent: int) -> None:
    code = 1
    try:
        try:
            applied = confine(policy, writable, parent)
        except Exception as refused:  # noqa: BLE001 -- whatever failed, the audit must not run unconfined
            answer = error_payload("internal_error", f"the audit's sandbox could not be set up: {refused}")
        else:
            answer = {**_run(work, reads, policy), "sandbox": applied}
        _write_all(writable, json.dumps(answer).encode())
        code = 0
    except BaseException:  # noqa: BLE001 -- the child must reach os._exit, never the pool's code
        traceback.print_exc()
    finally:
        os._exit(code)


def _run(work: Work, reads: tuple[Path, ...], policy: SandboxPolicy) -> dict[str, Any]:
    try:
        return work(reads)
    except MemoryError:
        return memory_exceeded(policy)
    except AuditError as refused:
        return error_payload(refused.code, refused.detail)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_answer(fd: int, deadline: float, cancelled: threading.Event) -> tuple[bytes, bool]:
    """Everything the child writes until it closes the pipe; (data, True) if the deadline came first."""
    chunks = []
    while not cancelled.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"", True
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.25))
        if not ready:
            continue
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"", False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
