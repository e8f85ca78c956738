"""What a sandboxed audit may use: time, memory, files, its scratch folder, its user."""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gradaudit.settings import Settings

# Files outside the libraries that the dynamic loader and Python read; /etc as a whole would expose /etc/shadow.
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/proc/cpuinfo", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/sys/devices/system/cpu")


@dataclass(frozen=True)
class SandboxPolicy:
    """The limits and the filesystem view of one audit's child process."""

    time_limit_s: float  # wall clock: the parent kills the child at it
    memory_bytes: int  # address space (and data) the audit may add to what the forked process already maps
    scratch: Path  # the audit's own folder: its working directory, the only place it may write
    reads: tuple[Path, ...] = ()  # the upload, its inputs, an external data folder: read-only
    user: str | None = None  # when the parent is root, the child runs as this user
    max_file_bytes: int = 4 << 30
    max_open_files: int = 256
    # RLIMIT_NPROC counts the user's threads across every audit (torch starts one per core in each); forking
    # is refused by seccomp, this only stops a thread bomb.
    max_threads: int = field(default_factory=lambda: max(512, 8 * (os.cpu_count() or 1)))
    limit_address_space: bool = True  # False on CUDA, which reserves far more address space than it uses
    libraries: tuple[Path, ...] = field(default_factory=lambda: library_paths())

    @property
    def cpu_limit_s(self) -> int:
        """RLIMIT_CPU: a backstop behind the wall clock, allowing every core to be busy for the whole time."""
        return int(self.time_limit_s * max(1, os.cpu_count() or 1)) + 5


def policy_for(settings: Settings, scratch: Path, reads: list[Path | None], *, drop_user: bool) -> SandboxPolicy:
    """The policy for an audit under these settings."""
    user = settings.sandbox_user if drop_user and os.geteuid() == 0 else None
    return SandboxPolicy(
        time_limit_s=settings.soft_time_limit_s, memory_bytes=settings.audit_memory_bytes,
        scratch=_reachable_scratch(Path(scratch)) if user else Path(scratch),
        reads=tuple(Path(path) for path in reads if path is not None),
        user=user,
        max_file_bytes=settings.max_extracted_bytes + settings.max_upload_bytes,
        limit_address_space=not _may_use_cuda(settings.device),
    )


def library_paths() -> tuple[Path, ...]:
    """Where installed code lives: the interpreter, its packages, our own packages, the system libraries."""
    import gradaudit
    import worker

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    paths.update(Path(path) for path in sysconfig.get_paths().values())
    paths.update(Path(entry) for entry in sys.path if entry and ("site-packages" in entry or "dist-packages" in entry))
    # The project's own folder may hold data (gradaudit-data); only its packages are readable.
    paths.update(Path(package.__file__).parent for package in (gradaudit, worker))
    paths.update(Path(path) for path in (*_SYSTEM_DIRS, *_SYSTEM_FILES))
    return tuple(sorted(path for path in paths if path.exists()))


def _reachable_scratch(scratch: Path) -> Path:
    """The scratch folder, or one in the system's temporary folder where the sandbox user could not cross a
    folder above it (a data dir under a private home): the engine resolves paths to absolute ones."""
    existing = scratch.absolute()
    while not existing.exists():
        existing = existing.parent
    if all(folder.stat().st_mode & stat.S_IXOTH for folder in (existing, *existing.parents)):
        return scratch
    base = Path(tempfile.gettempdir()) / "gradaudit-sandbox"
    base.mkdir(mode=0o711, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{scratch.name}-", dir=base))


def _may_use_cuda(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    return device == "auto" and Path("/dev/nvidiactl").exists()
