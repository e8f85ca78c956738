"""Inside the forked child, before the audit runs: drop everything the audit must not have. Order matters:
steps that need root (namespace, rules, limits) come before the user changes; seccomp comes last."""

from __future__ import annotations

import ctypes
import os
import re
import resource
import shutil
import signal
from pathlib import Path

from worker.sandbox import landlock, seccomp
from worker.sandbox.policy import SandboxPolicy
from worker.sandbox.users import sandbox_ids

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_KEPT_ENVIRONMENT = re.compile(r"^(PATH|LANG|LC_\w+|TZ|OMP_\w+|MKL_\w+|CUDA_VISIBLE_DEVICES|PYTHON\w*)$")
_libc = ctypes.CDLL(None, use_errno=True)


class ConfinementFailed(Exception):
    """A step the sandbox cannot run without failed: the audit must not run."""


def confine(policy: SandboxPolicy, keep_fds: tuple[int, ...], parent_pid: int) -> list[str]:
    """Confine this (child) process, keeping open only keep_fds (its pipes to the parent) of what it inherited;
    returns what was applied, for the report's setup."""
    applied = ["child process"]
    _default_signals()
    _close_inherited(keep_fds)
    _scrub_environment(policy.scratch)
    os.chdir(policy.scratch)
    ids = sandbox_ids(policy.user) if policy.user and os.geteuid() == 0 else None
    if _unshare_network():
        applied.append("no network (namespace)")
    mapped = _proc_status()  # before Landlock hides /proc
    seccomp.set_no_new_privs()
    abi = landlock.restrict([*policy.libraries, *policy.reads], [policy.scratch])
    applied.append(f"filesystem view (landlock ABI {abi})" if abi else "no filesystem view (landlock unavailable)")
    _set_limits(policy, mapped)
    applied.append(f"rlimits (memory {policy.memory_bytes >> 20} MB, cpu {policy.cpu_limit_s} s)")
    if ids:
        _become(*ids)
        applied.append(f"user {policy.user} (uid {ids[0]})")
    _die_with_parent(parent_pid)
    if seccomp.install():
        applied.append("no processes, programs or sockets (seccomp)")
    return applied


def prepare_scratch(policy: SandboxPolicy) -> tuple[Path, ...]:
    """In the parent, as root: the scratch folder owned by the sandbox user, with a copy of each upload in it
    (the store keeps uploads readable by root only). Returns the paths the audit should read."""
    policy.scratch.mkdir(parents=True, exist_ok=True)
    if not (policy.user and os.geteuid() == 0):
        return policy.reads
    uid, gid = sandbox_ids(policy.user)
    os.chown(policy.scratch, uid, gid)
    copies = []
    for index, path in enumerate(policy.reads):
        if path.is_file():
            copy = policy.scratch / f"upload-{index}{''.join(path.suffixes)[-16:]}"
            shutil.copyfile(path, copy)
            os.chown(copy, uid, gid)
            copies.append(Path(copy.name))  # relative to the child's working directory, the scratch folder
        else:
            copies.append(path)
    return tuple(copies)


def _default_signals() -> None:
    # The pool process's handlers (Celery's soft limit, shutdown) must not run in the audit.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)


def _close_inherited(keep_fds: tuple[int, ...]) -> None:
    # The pool's broker and database connections must not be reachable from the audit.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    low = 3
    for fd in sorted(keep_fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _scrub_environment(scratch: Path) -> None:
    for name in list(os.environ):
        if not _KEPT_ENVIRONMENT.match(name):
            del os.environ[name]
    os.environ.update(HOME=str(scratch), TMPDIR=str(scratch))


def _unshare_network() -> bool:
    return _libc.unshare(_CLONE_NEWNET) == 0


def _set_limits(policy: SandboxPolicy, status: dict[str, int]) -> None:
    limits = {resource.RLIMIT_DATA: status.get("VmData", 0) + policy.memory_bytes,
              resource.RLIMIT_CPU: policy.cpu_limit_s, resource.RLIMIT_FSIZE: policy.max_file_bytes,
              resource.RLIMIT_NOFILE: policy.max_open_files, resource.RLIMIT_NPROC: policy.max_threads,
              resource.RLIMIT_CORE: 0}
    if policy.limit_address_space:
        limits[resource.RLIMIT_AS] = status.get("VmSize", 0) + policy.memory_bytes
    for kind, value in limits.items():
        hard = value + 5 if kind == resource.RLIMIT_CPU else value  # SIGXCPU first, SIGKILL 5 s later
        resource.setrlimit(kind, (value, hard))


def _proc_status() -> dict[str, int]:
    sizes = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            sizes[key] = int(value.split()[0]) * 1024
    return sizes


def _become(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.geteuid() != uid or os.getegid() != gid:
        raise ConfinementFailed("the sandbox user could not be assumed")


def _die_with_parent(parent_pid: int) -> None:
    # After the user change, which clears it. If the parent died before this, stop now.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
