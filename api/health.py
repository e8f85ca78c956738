"""GET /healthz: is the database reachable, is the broker reachable."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import text

from api.services import services

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    """200 when both the database and the broker answer, else 503 naming the one that did not."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
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
