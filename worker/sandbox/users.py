"""The unprivileged user audits run as when the worker is root: created on first use if missing."""

from __future__ import annotations

import logging
import pwd
import subprocess
from functools import lru_cache

log = logging.getLogger(__name__)

FALLBACK_USER = "nobody"


@lru_cache(maxsize=8)
def sandbox_ids(name: str) -> tuple[int, int]:
    """(uid, gid) of the named user, creating it as a system user without a home or shell if it is missing;
    `nobody` where it cannot be created."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create(name)
    if entry.pw_uid == 0:
        raise ValueError(f"the sandbox user {name!r} is root")
    return entry.pw_uid, entry.pw_gid


def _create(name: str) -> pwd.struct_passwd:
    command = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", name]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        return pwd.getpwnam(name)
    except (OSError, subprocess.SubprocessError, KeyError):
        log.warning("could not create the sandbox user %s; audits run as %s", name, FALLBACK_USER, exc_info=True)
        return pwd.getpwnam(FALLBACK_USER)
