"""Worker fixtures: the database of the test's settings, for calling models.audits as requests and tasks do."""

from __future__ import annotations

import pytest

from tests.support.db import Database


@pytest.fixture
def db(sqlite_url):
    """The migrated SQLite database of sqlite_url, each call in its own session; its engine disposed after."""
    database = Database(sqlite_url)
    yield database
    database.engine.dispose()
