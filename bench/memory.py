"""This process's resident memory, read from /proc/self/status, for the benches' peak-memory figures.

Not getrusage's ru_maxrss: Linux carries that over from the parent across fork and exec, so a child started
by a parent holding a large network would report the parent's peak, not its own.
"""

from __future__ import annotations

from pathlib import Path


def reset_peak() -> int:
    """Restart the peak (VmHWM) from the current RSS; return that RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def peak() -> int:
    """The peak RSS in bytes since the last reset_peak (or since the process started)."""
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")
