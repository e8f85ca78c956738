"""What a child's exit means: its JSON answer, or the coded cause of its death."""

from __future__ import annotations

import json
import os
import resource
import signal
from typing import Any

from worker.sandbox.policy import SandboxPolicy

# How an allocation refused by RLIMIT_AS/RLIMIT_DATA reads once torch or Python has turned it into an error.
_ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "memoryerror", "bad_alloc",
                        "out of memory")


def error_payload(code: str, detail: str) -> dict[str, Any]:
    """The answer of an audit that failed with a code."""
    return {"error": {"code": code, "detail": detail}}


def is_allocation_failure(text: str) -> bool:
    """True when an error's text says memory was refused."""
    lowered = text.lower()
    return any(marker in lowered for marker in _ALLOCATION_FAILURES)


def memory_exceeded(policy: SandboxPolicy, detail: str = "") -> dict[str, Any]:
    """resource_limit_exceeded for memory, naming the limit."""
    reason = f"the audit needed more than its {policy.memory_bytes >> 20} MB of memory (GRADAUDIT_AUDIT_MEMORY_MB)"
    return error_payload("resource_limit_exceeded", f"{reason}: {detail}" if detail else reason)


def classify_death(status: int, usage: resource.struct_rusage, data: bytes, *, overran: bool,
                   policy: SandboxPolicy) -> dict[str, Any]:
    """The child's answer, or why it has none: over time, over memory, or crashed (with the signal)."""
    cpu_s = usage.ru_utime + usage.ru_stime
    if overran:
        return error_payload("time_limit_exceeded", f"the audit ran past its {policy.time_limit_s:g} s "
                             "(GRADAUDIT_SOFT_TIME_LIMIT_S); its process was killed")
    if os.WIFSIGNALED(status):
        return _killed_by(os.WTERMSIG(status), cpu_s, policy)
    answer = _parse(data)
    if answer is None:
        return error_payload("audit_crashed", f"the audit's process exited with status {os.waitstatus_to_exitcode(status)} "
                             "without a report")
    return answer


def _killed_by(signum: int, cpu_s: float, policy: SandboxPolicy) -> dict[str, Any]:
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_s >= policy.cpu_limit_s):
        return error_payload("time_limit_exceeded", f"the audit used {cpu_s:.0f} s of CPU time, past its limit of "
                             f"{policy.cpu_limit_s} s; its process was killed")
    if signum == signal.SIGKILL:
        return memory_exceeded(policy, "its process was killed with SIGKILL, most likely by the kernel's "
                               "out-of-memory killer")
    return error_payload("audit_crashed", f"the audit's process died of {signal.Signals(signum).name}")


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
