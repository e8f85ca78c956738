"""Shared fixtures: settings in a temporary folder, migrated databases, real Redis servers.

Services a test needs and cannot find are a skip on a laptop, and a failure where
GRADAUDIT_TEST_REQUIRE_SERVICES=1 (scripts/test sets it), so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gradaudit.settings import Settings, load_settings
from models.migrate import upgrade_database
from tests.support.ports import free_port

REQUIRE_SERVICES = os.environ.get("GRADAUDIT_TEST_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("GRADAUDIT_TEST_POSTGRES_URL")


def missing_service(reason: str) -> None:
    """Skip, or fail when the suite was told every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required test service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def make_settings(tmp_path: Path):
    """Build Settings rooted in this test's temporary folder."""

    def build(**overrides) -> Settings:
        # Auth off unless a test turns it on: tests of API keys do (tests/api/test_api_keys.py).
        values = {"data_dir": tmp_path / "data", "broker_url": "memory://", "auth": False, **overrides}
        return load_settings({}, **values)

    return build


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated, empty SQLite database in the test's folder."""
    url = f"sqlite:///{tmp_path / 'gradaudit.db'}"
    upgrade_database(url)
    return url


def _fresh_postgres_database() -> str:
    if not POSTGRES_URL:
        missing_service("GRADAUDIT_TEST_POSTGRES_URL is not set")
    name = f"gradaudit_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def empty_postgres_url() -> str:
    """A new, empty PostgreSQL database (no tables yet)."""
    return _fresh_postgres_database()


@pytest.fixture
def postgres_url(empty_postgres_url: str) -> str:
    """A new, migrated PostgreSQL database."""
    upgrade_database(empty_postgres_url)
    return empty_postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """A migrated database of each supported kind."""
    return request.getfixturevalue(f"{request.param}_url")


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("redis-server exited at start")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start listening")


@pytest.fixture
def redis_url(tmp_path: Path):
    """A real redis-server on 127.0.0.1, private to this test."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
