"""The database fixture of the models tests: each supported kind, migrated and empty."""

from __future__ import annotations

import pytest

from tests.support.db import Database


@pytest.fixture
def db(database_url):
    """SQLite and PostgreSQL, each migrated and empty."""
    database = Database(database_url)
    yield database
    database.engine.dispose()
