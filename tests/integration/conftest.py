"""Fixtures for tests on a real stack: a real Redis, the real API app, real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import SlowRecurrence, Stack, save_torchscript


@pytest.fixture
def stack(make_settings, sqlite_url, redis_url, tmp_path):
    """A real stack on SQLite, with quick heartbeats so a dead worker is noticed in seconds."""
    settings = make_settings(database_url=sqlite_url, broker_url=redis_url, heartbeat_s=0.5, stale_after_s=3)
    running = Stack(settings, tmp_path)
    yield running
    running.close()


@pytest.fixture
def slow_network(tmp_path) -> Path:
    """A TorchScript network whose audit takes seconds; SLOW_OPTIONS gives its input shape."""
    return save_torchscript(SlowRecurrence(steps=150), tmp_path / "slow.pt")
