"""Which torch device an audit runs on."""

from __future__ import annotations

import re

import torch

from gradaudit.errors import AuditError


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cpu', 'cuda', 'cuda:N' honoured if present."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", requested)
    if match is None:
        raise AuditError("device_unavailable", f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise AuditError("device_unavailable", f"device {requested!r} requested but no CUDA device is available")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise AuditError("device_unavailable", f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
    return requested
