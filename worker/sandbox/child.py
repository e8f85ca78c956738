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
from worker.sandbox.progress import ProgressChannel

log = logging.getLogger(__name__)

Work = Callable[[tuple[Path, ...]], dict[str, Any]]  # the read paths as the child sees them -> a JSON-able answer
_CHUNK = 1 << 20


def run_in_child(work: Work, policy: SandboxPolicy, progress: ProgressChannel | None = None) -> dict[str, Any]:
    """Run work in a confined child; return its answer, or {"error": {code, detail}} if it died or overran.
    The answer carries "sandbox": what confinement the child applied. With a progress channel, work may call
    progress.send while it runs; the parent passes on what it accepts as it comes."""
    launch = _Launch(work, policy, prepare_scratch(policy), progress)
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

    def __init__(self, work: Work, policy: SandboxPolicy, reads: tuple[Path, ...], progress: ProgressChannel | None):
        super().__init__(name="gradaudit-sandbox", daemon=True)
        self._work, self._policy, self._reads, self._progress = work, policy, reads, progress
        self._cancelled = threading.Event()
        self.answer: dict[str, Any] = error_payload("audit_crashed", "the audit's process never reported")

    def cancel(self) -> None:
        """Kill the child (now, or as soon as it exists)."""
        self._cancelled.set()

    def run(self) -> None:
        parent = os.getpid()
        readable, writable = os.pipe()
        progress = self._progress
        if progress is not None:
            progress.open()
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            os.close(readable)
            if progress is not None:
                progress.in_child()
            kept = (writable, progress.write_fd) if progress is not None else (writable,)
            _child(self._work, self._policy, self._reads, kept, parent)
        os.close(writable)
        if progress is not None:
            progress.in_parent()
        try:
            data, overran = _read_answer(readable, time.monotonic() + self._policy.time_limit_s, self._cancelled,
                                         progress)
        finally:
            os.close(readable)
            if progress is not None:
                progress.close()
        if overran or self._cancelled.is_set():
            _kill(pid)
        _, status, usage = os.wait4(pid, 0)
        self.answer = classify_death(status, usage, data, overran=overran, policy=self._policy)


def _child(work: Work, policy: SandboxPolicy, reads: tuple[Path, ...], kept: tuple[int, ...], parent: int) -> None:
    code, writable = 1, kept[0]
    try:
        try:
            applied = confine(policy, kept, parent)
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


def _read_answer(fd: int, deadline: float, cancelled: threading.Event,
                 progress: ProgressChannel | None = None) -> tuple[bytes, bool]:
    """Everything the child writes until it closes the pipe; (data, True) if the deadline came first. Progress
    lines are passed on meanwhile."""
    chunks = []
    watched = [fd, progress.read_fd] if progress is not None else [fd]
    while not cancelled.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"", True
        ready, _, _ = select.select(watched, [], [], min(remaining, 0.25))
        if progress is not None and progress.read_fd in ready and not _received(progress):
            watched.remove(progress.read_fd)
        if fd not in ready:
            continue
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"", False


def _received(progress: ProgressChannel) -> bool:
    """Read the progress pipe; False once there is nothing more to read from it."""
    try:
        return progress.receive()
    except Exception:  # progress must never cost the audit its answer
        log.warning("reading the audit's progress failed; ignoring it from now on", exc_info=True)
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
