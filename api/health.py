"""GET /healthz: is the database reachable, is the broker reachable, can the artifact store keep files."""

from __future__ import annotations

import os
import tempfile

from flask import Blueprint
from sqlalchemy import text

from api.services import services

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    """200 when the database, the broker and the artifact store answer, else 503 naming the one that did not."""
    checks = {"database": _database_ok(), "broker": _broker_ok(), "storage": _storage_ok()}
    status = 200 if all(checks.values()) else 503
    return {"status": "ok" if status == 200 else "unavailable", "checks": checks}, status


def _database_ok() -> bool:
    try:
        with services().sessions() as db_session:
            db_session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    try:
        with services().celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def _storage_ok() -> bool:
    # Writing a file is the only proof: a folder can exist, and even look writable, on a full or read-only disk.
    try:
        root = services().store.root
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".healthz-") as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
        return True
    except OSError:
        return False
