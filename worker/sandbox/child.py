"""Fork a child from this (already warm) process, confine it, run one piece of work in it, and read back its
JSON answer through a pipe. The child's death is classified by cause; the parent always survives."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
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
    reads = prepare_scratch(policy)
    parent = os.getpid()
    native_threads = _native_threads()
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        os.close(readable)
        single = _single_threaded_if(native_threads)
        _child(work, policy, reads, writable, parent, single)
    os.close(writable)
    try:
        data, overran = _read_answer(readable, time.monotonic() + policy.time_limit_s)
    except BaseException:
        # Celery's soft time limit (or a shutdown) interrupts the wait: the child goes with it.
        _kill(pid)
        raise
    finally:
        os.close(readable)
    if overran:
        _kill(pid)
    _, status, usage = os.wait4(pid, 0)
    return classify_death(status, usage, data, overran=overran, policy=policy)


def _child(work: Work, policy: SandboxPolicy, reads: tuple[Path, ...], writable: int, parent: int,
           single_threaded: bool) -> None:
    code = 1
    try:
        try:
            applied = confine(policy, writable, parent) + (["one thread"] if single_threaded else [])
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


def _native_threads() -> int:
    """Threads Python did not start: an OpenMP pool (or another native pool) the parent has used."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def _single_threaded_if(native_threads: int) -> bool:
    # GNU OpenMP cannot run a parallel region in a child forked after the parent ran one (its team waits
    # forever for threads the fork did not copy). The worker's pool process computes nothing, so this only
    # applies where a process also audits in-process (tests, benchmarks): those children run single-threaded.
    torch = sys.modules.get("torch")
    if native_threads > 0 and torch is not None:
        torch.set_num_threads(1)
        return True
    return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_answer(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything the child writes until it closes the pipe; (data, True) if the deadline came first."""
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"", True
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not ready:
            continue
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
