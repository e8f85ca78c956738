"""What a worker process needs to run audits, built once per process from settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from gradaudit.artifacts import ArtifactStore
from gradaudit.settings import Settings, load_settings
from models.database import make_engine, make_session_factory


@dataclass(frozen=True)
class WorkerContext:
    """Settings, database sessions and the artifact store of one worker process."""

    settings: Settings
    sessions: sessionmaker[Session]
    store: ArtifactStore


def build_context(settings: Settings) -> WorkerContext:
    """A context for these settings."""
    return WorkerContext(
        settings=settings,
        sessions=make_session_factory(make_engine(settings.sqlalchemy_url)),
        store=ArtifactStore(settings.artifacts_path),
    )


@lru_cache(maxsize=1)
def current_context() -> WorkerContext:
    """The context of this process, from the environment."""
    return build_context(load_settings())


def worker_id() -> str:
    """This process, as `host:pid`: what an audit row records as its owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str) -> bool:
    """True when the owner ran on this host and its process is gone; other hosts can't be checked."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
