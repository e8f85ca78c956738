"""Landlock (Linux 5.13+): a filesystem view of read-only libraries and upload, one writable scratch folder,
no TCP (ABI 4+) and no signals or abstract sockets outside the sandbox (ABI 6+). Python 3.11 has no binding,
so the three system calls go through ctypes; their numbers are the same on every architecture."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_RULESET_VERSION = 1
_PATH_BENEATH = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_FILE_RIGHTS = {1: _EXECUTE | _WRITE_FILE | _READ_FILE, 3: 1 << 14}  # ABI 3 adds TRUNCATE
_ALL_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_TCP = 1 | 2  # BIND_TCP | CONNECT_TCP, ABI 4+
_SCOPED = 1 | 2  # ABSTRACT_UNIX_SOCKET | SIGNAL, ABI 6+


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 where Landlock is missing or disabled."""
    version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_RULESET_VERSION))
    return max(version, 0)


def restrict(reads: list[Path], writes: list[Path]) -> int:
    """Confine this process (and its threads' future) to reads and writes; returns the ABI used, 0 if none.
    The caller must have set no_new_privs."""
    abi = abi_version()
    if abi < 1:
        return 0
    handled = _all_fs(abi)
    attr = _RulesetAttr(handled, _NET_TCP if abi >= 4 else 0, _SCOPED if abi >= 6 else 0)
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = _check(_libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)))
    try:
        read_dir = _EXECUTE | _READ_FILE | _READ_DIR
        for path in reads:
            _allow(ruleset, path, read_dir if path.is_dir() else _EXECUTE | _READ_FILE)
        for path in writes:
            _allow(ruleset, path, handled if path.is_dir() else _file_rights(abi))
        _check(_libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)))
    finally:
        os.close(ruleset)
    return abi


def _all_fs(abi: int) -> int:
    return _ALL_FS_BY_ABI[max(key for key in _ALL_FS_BY_ABI if key <= abi)]


def _file_rights(abi: int) -> int:
    return _FILE_RIGHTS[1] | (_FILE_RIGHTS[3] if abi >= 3 else 0)


def _allow(ruleset: int, path: Path, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a library folder this system lacks
    try:
        rule = _PathBeneath(access, fd)
        _check(_libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_PATH_BENEATH), ctypes.byref(rule),
                             ctypes.c_uint32(0)))
    finally:
        os.close(fd)


def _check(result: int) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result
