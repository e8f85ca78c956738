"""How many audits one worker runs at once, and how many CPU threads each gets.

One slow or hostile audit holds its slot until its time limit; with more than one slot the queue behind it keeps
moving. Slots are bounded by the memory budget (each audit may add GRADAUDIT_AUDIT_MEMORY_MB, so the slots'
budgets together fit in the machine) and by the CPUs (a slot without a core of its own only slows the others).
A GPU worker runs one audit per GPU: each may use all of that GPU's memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gradaudit.settings import Settings


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory_bytes: int
    has_gpu: bool


def this_machine() -> Machine:
    """The CPUs this process may run on, the physical memory, and whether an NVIDIA GPU is visible (by its
    device node: asking CUDA would initialise it in a process the pool forks from)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    has_gpu = any(Path("/dev").glob("nvidia[0-9]*"))
    return Machine(cpus=cpus, memory_bytes=memory, has_gpu=has_gpu)


def audit_slots(settings: Settings, machine: Machine) -> int:
    """GRADAUDIT_WORKER_CONCURRENCY when set; otherwise 1 on a GPU, else as many as CPUs and memory allow."""
    if settings.worker_concurrency:
        return settings.worker_concurrency
    if _uses_gpu(settings.device, machine):
        return 1
    fit_in_memory = machine.memory_bytes // settings.audit_memory_bytes
    return max(1, min(machine.cpus, fit_in_memory))


def threads_per_audit(slots: int, machine: Machine) -> int:
    """The CPUs shared evenly among the slots, so concurrent audits do not oversubscribe the cores."""
    return max(1, machine.cpus // slots)


def _uses_gpu(device: str, machine: Machine) -> bool:
    if device == "auto":
        return machine.has_gpu
    return device.startswith("cuda")
