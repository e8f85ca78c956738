"""`gradaudit keys create --webhook-url`, `keys set-webhook` and `keys webhook-secret`: a key's default webhook,
checked as the API checks options.webhook_url, and the secret its webhooks are signed with."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import main
from models import api_keys
from models.database import make_engine, make_session_factory
from tests.support.receiver import key_secret

SECRET = "server-webhook-secret-0123456789"
UNSET = {"DATABASE_URL": None, "GRADAUDIT_DATA_DIR": None, "GRADAUDIT_WEBHOOK_SECRET": None,
         "GRADAUDIT_WEBHOOK_ALLOW_PRIVATE": None, "GRADAUDIT_ENV": None}
WEBHOOKS = {"GRADAUDIT_WEBHOOK_SECRET": SECRET, "GRADAUDIT_WEBHOOK_ALLOW_PRIVATE": "true"}


def keys(data_dir, *args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["keys", "--data-dir", str(data_dir), *args], env={**UNSET, **(env or {})})


def stored_keys(data_dir) -> dict[str, api_keys.ApiKey]:
    engine = make_engine(f"sqlite:///{data_dir / 'gradaudit.db'}")
    try:
        with make_session_factory(engine)() as db_session:
            return {key.name: key for key in api_keys.list_keys(db_session=db_session)}
    finally:
        engine.dispose()


def test_a_key_keeps_its_default_webhook(tmp_path):
    created = keys(tmp_path, "create", "--name", "ci", "--webhook-url", "http://127.0.0.1:9000/hook", env=WEBHOOKS)
    assert created.exit_code == 0, created.output
    key = stored_keys(tmp_path)["ci"]
    assert key.webhook_url == "http://127.0.0.1:9000/hook"
    assert f"gradaudit keys webhook-secret {key.id}" in created.stderr
    header, row = keys(tmp_path, "list").stdout.splitlines()
    assert dict(zip(header.split("\t"), row.split("\t")))["webhook"] == "http://127.0.0.1:9000/hook"


@pytest.mark.parametrize(("env", "says"), [
    ({"GRADAUDIT_WEBHOOK_SECRET": SECRET}, "127.0.0.1 is a loopback address"),
    ({"GRADAUDIT_WEBHOOK_ALLOW_PRIVATE": "true"}, "needs GRADAUDIT_WEBHOOK_SECRET"),
])
def test_a_webhook_the_service_would_refuse_is_refused_here(tmp_path, env, says):
    refused = keys(tmp_path, "create", "--name", "ci", "--webhook-url", "http://127.0.0.1:9000/hook", env=env)
    assert refused.exit_code == 2 and says in refused.output
    assert not (tmp_path / "gradaudit.db").exists() or stored_keys(tmp_path) == {}


def test_set_webhook_sets_and_clears(tmp_path):
    assert keys(tmp_path, "create", "--name", "ci", env=WEBHOOKS).exit_code == 0
    key_id = stored_keys(tmp_path)["ci"].id
    assert keys(tmp_path, "set-webhook", key_id, "https://8.8.8.8/hook", env=WEBHOOKS).exit_code == 0
    assert stored_keys(tmp_path)["ci"].webhook_url == "https://8.8.8.8/hook"
    assert keys(tmp_path, "set-webhook", key_id, env=WEBHOOKS).exit_code == 0
    assert stored_keys(tmp_path)["ci"].webhook_url is None
    assert keys(tmp_path, "set-webhook", "nope", env=WEBHOOKS).exit_code == 1


def test_the_webhook_secret_is_the_keys_own_and_never_stored(tmp_path):
    assert keys(tmp_path, "create", "--name", "ci", env=WEBHOOKS).exit_code == 0
    key_id = stored_keys(tmp_path)["ci"].id
    printed = keys(tmp_path, "webhook-secret", key_id, env=WEBHOOKS)
    assert printed.exit_code == 0 and printed.stdout.strip() == key_secret(SECRET, key_id)
    assert keys(tmp_path, "webhook-secret", env=WEBHOOKS).stdout.strip() == key_secret(SECRET, None)
    assert printed.stdout.strip().encode() not in (tmp_path / "gradaudit.db").read_bytes()


def test_without_a_server_secret_there_is_no_webhook_secret(tmp_path):
    refused = keys(tmp_path, "webhook-secret")
    assert refused.exit_code == 1 and "GRADAUDIT_WEBHOOK_SECRET is not set" in refused.output
