"""gradaudit.settings: GRADAUDIT_AUTH and the per-key limit; production refuses to run without keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gradaudit.settings import child_environment, load_settings

PRODUCTION = {"GRADAUDIT_ENV": "production", "DATABASE_URL": "postgresql+psycopg://db/gradaudit",
              "CELERY_BROKER_URL": "redis://redis:6379/0"}


def test_auth_is_required_unless_turned_off():
    assert load_settings({}).auth is None and load_settings({}).auth_required
    assert load_settings({"GRADAUDIT_AUTH": "on"}).auth_required
    assert not load_settings({"GRADAUDIT_AUTH": "off"}).auth_required


def test_production_refuses_auth_off():
    with pytest.raises(ValidationError, match="GRADAUDIT_AUTH cannot be off when GRADAUDIT_ENV=production"):
        load_settings({**PRODUCTION, "GRADAUDIT_AUTH": "off"})
    assert load_settings(PRODUCTION).auth_required


def test_the_per_key_limit_is_read_and_must_be_positive():
    assert load_settings({}).max_active_audits_per_key == 10
    assert load_settings({"GRADAUDIT_MAX_ACTIVE_AUDITS_PER_KEY": "3"}).max_active_audits_per_key == 3
    with pytest.raises(ValidationError):
        load_settings({"GRADAUDIT_MAX_ACTIVE_AUDITS_PER_KEY": "0"})


def test_a_child_sees_auth_off_as_off():
    settings = load_settings({"GRADAUDIT_AUTH": "off"})
    assert not load_settings(child_environment(settings)).auth_required
