"""gradaudit.settings: defaults, environment parsing, and the combinations it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gradaudit.settings import ENVIRONMENT_VARIABLES, Settings, child_environment, load_settings

PRODUCTION = {"GRADAUDIT_ENV": "production", "DATABASE_URL": "postgresql+psycopg://db/gradaudit",
              "CELERY_BROKER_URL": "redis://redis:6379/0"}


DEFAULTS = {
    "env": "development", "data_dir": Path("gradaudit-data"), "database_url": None, "broker_url": None,
    "artifact_dir": None, "max_upload_mb": 512, "soft_time_limit_s": 900, "hard_time_limit_s": 960,
    "max_attempts": 3, "heartbeat_s": 5.0, "stale_after_s": 30.0, "device": "auto",
}


def test_defaults():
    assert load_settings({}).model_dump().items() >= DEFAULTS.items()


def test_every_field_has_one_variable():
    assert sorted(ENVIRONMENT_VARIABLES.values()) == sorted(Settings.model_fields)
    assert all(name.isupper() for name in ENVIRONMENT_VARIABLES)


def test_derived_values_by_default():
    settings = load_settings({})
    assert settings.sqlalchemy_url == f"sqlite:///{Path('gradaudit-data').resolve() / 'gradaudit.db'}"
    assert settings.artifacts_path == Path("gradaudit-data") / "artifacts"
    assert settings.max_upload_bytes == 512 * 1024 * 1024
    assert settings.visibility_timeout_s == 1020


def test_every_variable_is_parsed(tmp_path):
    environ = {
        "GRADAUDIT_ENV": "production", "GRADAUDIT_DATA_DIR": str(tmp_path), "DATABASE_URL": "sqlite:///x.db",
        "CELERY_BROKER_URL": "redis://r:6379/1", "GRADAUDIT_ARTIFACT_DIR": str(tmp_path / "a"),
        "GRADAUDIT_MAX_UPLOAD_MB": "7", "GRADAUDIT_SOFT_TIME_LIMIT_S": "10", "GRADAUDIT_HARD_TIME_LIMIT_S": "20",
        "GRADAUDIT_MAX_ATTEMPTS": "5", "GRADAUDIT_HEARTBEAT_S": "0.5", "GRADAUDIT_STALE_AFTER_S": "2.5",
        "GRADAUDIT_DEVICE": "cpu",
    }
    assert set(environ) <= set(ENVIRONMENT_VARIABLES)
    settings = load_settings(environ)

    assert settings.model_dump().items() >= {
        "env": "production", "data_dir": tmp_path, "database_url": "sqlite:///x.db",
        "broker_url": "redis://r:6379/1", "artifact_dir": tmp_path / "a", "max_upload_mb": 7,
        "soft_time_limit_s": 10, "hard_time_limit_s": 20, "max_attempts": 5, "heartbeat_s": 0.5,
        "stale_after_s": 2.5, "device": "cpu",
    }.items()
    assert settings.sqlalchemy_url == "sqlite:///x.db"
    assert settings.artifacts_path == tmp_path / "a"
    assert settings.max_upload_bytes == 7 * 1024 * 1024


def test_empty_variables_and_strangers_are_ignored():
    settings = load_settings({"DATABASE_URL": "", "GRADAUDIT_MAX_UPLOAD_MB": "", "PATH": "/bin", "MAX_UPLOAD": "1"})
    assert settings == load_settings({})


def test_overrides_beat_the_environment(tmp_path):
    settings = load_settings({"GRADAUDIT_MAX_UPLOAD_MB": "7"}, max_upload_mb=9, data_dir=tmp_path)
    assert (settings.max_upload_mb, settings.data_dir) == (9, tmp_path)


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("GRADAUDIT_DEVICE", "cuda:1")
    assert load_settings().device == "cuda:1"


@pytest.mark.parametrize(("name", "value"), [
    ("GRADAUDIT_MAX_UPLOAD_MB", "abc"), ("GRADAUDIT_MAX_UPLOAD_MB", "0"), ("GRADAUDIT_MAX_ATTEMPTS", "0"),
    ("GRADAUDIT_HEARTBEAT_S", "-1"), ("GRADAUDIT_ENV", "staging"), ("GRADAUDIT_SOFT_TIME_LIMIT_S", "1.5"),
])
def test_bad_values_are_refused(name, value):
    with pytest.raises(ValidationError):
        load_settings({name: value})


@pytest.mark.parametrize("missing", ["DATABASE_URL", "CELERY_BROKER_URL"])
def test_production_requires_database_and_broker(missing):
    environ = {name: value for name, value in PRODUCTION.items() if name != missing}
    with pytest.raises(ValidationError, match=f"{missing} must be set when GRADAUDIT_ENV=production"):
        load_settings(environ)


def test_production_with_both_urls():
    settings = load_settings(PRODUCTION)
    assert (settings.env, settings.sqlalchemy_url) == ("production", PRODUCTION["DATABASE_URL"])


@pytest.mark.parametrize("hard", ["900", "899"])
def test_hard_limit_must_exceed_soft_limit(hard):
    environ = {"GRADAUDIT_SOFT_TIME_LIMIT_S": "900", "GRADAUDIT_HARD_TIME_LIMIT_S": hard}
    with pytest.raises(ValidationError, match="HARD_TIME_LIMIT_S must exceed"):
        load_settings(environ)


@pytest.mark.parametrize("stale", ["10", "9"])
def test_stale_after_must_exceed_two_heartbeats(stale):
    with pytest.raises(ValidationError, match="STALE_AFTER_S must exceed twice"):
        load_settings({"GRADAUDIT_HEARTBEAT_S": "5", "GRADAUDIT_STALE_AFTER_S": stale})


@pytest.mark.parametrize(("soft", "hard"), [(1, 2), (900, 960), (3600, 7200)])
def test_visibility_timeout_outlasts_the_hard_limit(soft, hard):
    settings = Settings(soft_time_limit_s=soft, hard_time_limit_s=hard)
    assert settings.visibility_timeout_s > settings.hard_time_limit_s


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        load_settings({}).max_attempts = 9


def test_child_environment_round_trips(tmp_path, monkeypatch):
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UNRELATED", "kept")
    settings = load_settings({}, data_dir=tmp_path, broker_url="redis://x:1/0", max_attempts=4, heartbeat_s=0.5,
                             stale_after_s=2.0)
    environ = child_environment(settings)

    assert environ["UNRELATED"] == "kept"
    assert environ["DATABASE_URL"] == f"sqlite:///{(tmp_path / 'gradaudit.db').resolve()}"
    assert "GRADAUDIT_ARTIFACT_DIR" not in environ
    assert load_settings(environ) == settings.model_copy(update={"database_url": environ["DATABASE_URL"]})
