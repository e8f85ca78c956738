"""A seccomp filter for the audit's child: no new processes (threads stay allowed), no programs, no sockets,
no namespaces or mounts, no tracing. Built as classic BPF through ctypes; x86_64 and aarch64."""

from __future__ import annotations

import ctypes
import errno
import os
import platform

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000

# arch -> (AUDIT_ARCH_*, {denied syscall: number}, clone, clone3)
_ARCHES = {
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "socket": 41,
                            "socketpair": 53, "ptrace": 101, "unshare": 272, "setns": 308, "mount": 165,
                            "process_vm_readv": 310, "process_vm_writev": 311}, 56, 435),
    "aarch64": (0xC00000B7, {"execve": 221, "execveat": 281, "socket": 198, "socketpair": 199, "ptrace": 117,
                             "unshare": 97, "setns": 268, "mount": 40, "process_vm_readv": 270,
                             "process_vm_writev": 271}, 220, 435),
}


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


_libc = ctypes.CDLL(None, use_errno=True)


def supported() -> bool:
    """True where this module knows the architecture's system call numbers."""
    return platform.machine() in _ARCHES


def set_no_new_privs() -> None:
    """No setuid binary or file capability can raise this process's privileges again (Landlock and seccomp
    require it)."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))


def install() -> bool:
    """Load the filter into this process; False where the architecture is not known."""
    if not supported():
        return False
    program = _instructions(*_ARCHES[platform.machine()])
    array = (_Filter * len(program))(*[_Filter(*instruction) for instruction in program])
    prog = _Program(len(program), array)
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0))
    return True


def _instructions(arch: int, denied: dict[str, int], clone: int, clone3: int) -> list[tuple[int, int, int, int]]:
    """arch check; x32 calls refused; each denied call -> EPERM; clone3 -> ENOSYS (glibc then uses clone);
    clone -> allowed only with CLONE_THREAD; everything else allowed."""
    deny = _ERRNO | errno.EPERM
    head = [(_LD_W_ABS, 0, 0, 4), (_JEQ_K, 1, 0, arch), (_RET_K, 0, 0, _KILL_PROCESS), (_LD_W_ABS, 0, 0, 0)]
    numbers = list(denied.values())
    # Jump targets count instructions after the jump: layout is [checks..., clone3, clone, allow, deny, nosys, thread]
    body = [(_JGE_K, len(numbers) + 3, 0, _X32_BIT)]
    body += [(_JEQ_K, len(numbers) - index + 2, 0, number) for index, number in enumerate(numbers)]
    body += [(_JEQ_K, 3, 0, clone3), (_JEQ_K, 3, 0, clone), (_RET_K, 0, 0, _ALLOW), (_RET_K, 0, 0, deny),
             (_RET_K, 0, 0, _ERRNO | errno.ENOSYS),
             (_LD_W_ABS, 0, 0, 16), (_JSET_K, 0, 1, _CLONE_THREAD), (_RET_K, 0, 0, _ALLOW), (_RET_K, 0, 0, deny)]
    return head + body


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
