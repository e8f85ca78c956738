"""Sizes checked before allocation: a declared shape's bytes against the audit's memory budget.

A shape is a user's claim (options, an ONNX declaration, an .npz header); allocating it first would turn a few
bytes of upload into an allocator failure, or a process the kernel kills. Refused as `input_too_large` instead.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable

from gradaudit.errors import AuditError


def memory_budget() -> int:
    """The bytes this audit may allocate: the process's memory limits (the sandbox sets them from
    GRADAUDIT_AUDIT_MEMORY_MB), else half the machine's memory, as the setting's default is."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2]
    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft, _ = resource.getrlimit(kind)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    return min(limits)


def declared_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of a tensor of this shape: exact Python integers, so 2**62-sized dims cannot overflow."""
    return math.prod(int(dim) for dim in shape) * itemsize


def refuse_past_budget(what: str, shape: Iterable[int], itemsize: int, budget: int) -> None:
    """AuditError("input_too_large") when `what` of this shape would not fit in the budget."""
    shape = list(shape)
    size = declared_bytes(shape, itemsize)
    if size > budget:
        raise AuditError("input_too_large", f"{what} of shape {_show(shape)} takes {readable(size)}; "
                                            f"the audit's memory budget is {readable(budget)} (GRADAUDIT_AUDIT_MEMORY_MB)")


def refuse_total_past_budget(what: str, size: int, budget: int) -> None:
    """AuditError("input_too_large") when `size` bytes of `what` would not fit in the budget."""
    if size > budget:
        raise AuditError("input_too_large", f"{what} take {readable(size)}; the audit's memory budget is "
                                            f"{readable(budget)} (GRADAUDIT_AUDIT_MEMORY_MB)")


def readable(size: int) -> str:
    """Bytes as a short figure: 1.5 GiB, 3.2e+11 GiB for the absurd."""
    gib = size / 2**30
    if gib >= 1e6:
        return f"{gib:.1e} GiB"
    return f"{gib:.1f} GiB" if gib >= 1 else f"{size / 2**20:.1f} MiB"


def _show(shape: list[int]) -> str:
    text = "[" + ", ".join(str(dim) for dim in shape[:8]) + (", ..." if len(shape) > 8 else "") + "]"
    return text if len(shape) <= 8 else f"{text} ({len(shape)} dims)"
