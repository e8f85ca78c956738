"""`gradaudit keys create|list|revoke` against the data dir's database, `serve`'s rule for running without
keys, and `submit --api-key` / GRADAUDIT_API_KEY sending the key."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from api import create_app
from cli.keys import is_loopback, serve_auth
from cli.main import main
from gradaudit.client import Client, ServiceError
from tests.support.threaded_app import serving

UNSET = {"DATABASE_URL": None, "GRADAUDIT_DATA_DIR": None, "GRADAUDIT_API_KEY": None, "GRADAUDIT_AUTH": None,
         "GRADAUDIT_ENV": None}


@pytest.fixture
def data_dir(tmp_path):
    """An empty data dir: the keys commands create its SQLite database."""
    return tmp_path / "data"


def keys(data_dir, *args: str, env: dict | None = None):
    """Run `gradaudit keys --data-dir DIR ARGS...`."""
    return CliRunner().invoke(main, ["keys", "--data-dir", str(data_dir), *args], env={**UNSET, **(env or {})})


def api(data_dir, **overrides):
    """A test client of an app with auth on over the data dir's database."""
    from gradaudit.settings import load_settings

    settings = load_settings({}, data_dir=data_dir, broker_url="memory://", auth=True, **overrides)
    return create_app(settings).test_client()


def listed(data_dir) -> list[dict[str, str]]:
    """`keys list` parsed: one dict per key."""
    header, *rows = keys(data_dir, "list").stdout.splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"))) for row in rows]


def test_create_prints_the_key_once_and_it_works(data_dir):
    created = keys(data_dir, "create", "--name", "ci")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("ga_") and len(secret) == 46
    assert "shown only now" in created.stderr

    client = api(data_dir)
    assert client.get("/v1/audits", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert client.get("/v1/audits").status_code == 401
    assert secret.encode() not in (data_dir / "gradaudit.db").read_bytes()


def test_list_shows_prefix_name_and_admin_never_the_key(data_dir):
    ci = keys(data_dir, "create", "--name", "ci").stdout.strip()
    ops = keys(data_dir, "create", "--name", "ops", "--admin").stdout.strip()
    output = keys(data_dir, "list").stdout

    rows = listed(data_dir)
    assert [(row["name"], row["admin"], row["revoked"]) for row in rows] == [("ci", "no", "-"), ("ops", "yes", "-")]
    assert [row["prefix"] for row in rows] == [ci[:11], ops[:11]]
    assert ci not in output and ops not in output


@pytest.mark.parametrize("by", ["id", "prefix"])
def test_revoke_by_id_or_prefix_then_401(data_dir, by):
    secret = keys(data_dir, "create", "--name", "ci").stdout.strip()
    row = listed(data_dir)[0]

    revoked = keys(data_dir, "revoke", row[by])
    assert revoked.exit_code == 0 and revoked.stdout.startswith("revoked ")
    assert listed(data_dir)[0]["revoked"] != "-"
    response = api(data_dir).get("/v1/audits", headers={"Authorization": f"Bearer {secret}"})
    assert (response.status_code, response.json["code"]) == (401, "invalid_api_key")
    assert keys(data_dir, "revoke", row["id"]).stdout.startswith("already revoked")


def test_revoking_an_unknown_key_is_an_error(data_dir):
    refused = keys(data_dir, "revoke", "ga_nothing")
    assert refused.exit_code == 1 and "no key with id or prefix 'ga_nothing'" in refused.output


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_on_loopback_keeps_auth_off_and_says_so(make_settings):
    settings, line = serve_auth(make_settings(auth=None), "127.0.0.1")
    assert settings.auth_required is False
    assert "auth is OFF" in line and "127.0.0.1" in line


@pytest.mark.parametrize("auth", [None, True])
def test_serve_elsewhere_requires_keys(make_settings, auth):
    settings, line = serve_auth(make_settings(auth=auth), "0.0.0.0")
    assert settings.auth_required and "API keys required" in line


def test_serve_on_loopback_with_auth_asked_for_requires_keys(make_settings):
    assert serve_auth(make_settings(auth=True), "127.0.0.1")[0].auth_required


def test_production_serve_on_loopback_still_requires_keys(make_settings):
    production = make_settings(auth=None, env="production", database_url="sqlite:///x.db")
    assert serve_auth(production, "127.0.0.1")[0].auth_required


def test_serve_elsewhere_with_auth_off_is_refused(make_settings):
    with pytest.raises(click.UsageError, match="refusing to serve on 0.0.0.0 with GRADAUDIT_AUTH=off"):
        serve_auth(make_settings(auth=False), "0.0.0.0")


def test_the_serve_command_refuses_before_starting_anything(tmp_path):
    env = {**UNSET, "GRADAUDIT_AUTH": "off"}
    refused = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")], env=env)
    assert refused.exit_code == 2 and "refusing to serve on 0.0.0.0" in refused.output
    assert not (tmp_path / "d").exists()


@pytest.fixture
def served(data_dir):
    """An app with auth on, on an ephemeral port; yields (base URL, a key's secret)."""
    secret = keys(data_dir, "create", "--name", "ci").stdout.strip()
    from gradaudit.settings import load_settings

    app = create_app(load_settings({}, data_dir=data_dir, broker_url="memory://", auth=True))
    with serving(app) as url:
        yield url, secret


@pytest.fixture
def onnx_file(tmp_path):
    """A minimal ModelProto on disk: ir_version and an empty graph."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"\x08\x07:\x00")
    return path


def test_the_client_sends_its_key(served, onnx_file):
    url, secret = served
    queued = Client(url, api_key=secret).submit(onnx_file, options={})
    assert Client(url, api_key=secret).get(queued["id"])["status"] == "queued"
    with pytest.raises(ServiceError) as refused:
        Client(url).get(queued["id"])
    assert refused.value.code == "unauthorized"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_submit_takes_the_key_from_the_option_or_the_environment(served, onnx_file, how):
    url, secret = served
    args, env = ["submit", str(onnx_file), "--url", url], dict(UNSET)
    if how == "option":
        args += ["--api-key", secret]
    else:
        env["GRADAUDIT_API_KEY"] = secret
    submitted = CliRunner().invoke(main, args, env=env)
    assert submitted.exit_code == 0, submitted.output
    assert submitted.stdout.startswith("queued audit ")


def test_submit_without_a_key_exits_2_with_the_code(served, onnx_file):
    url, _ = served
    refused = CliRunner().invoke(main, ["submit", str(onnx_file), "--url", url], env=UNSET)
    assert refused.exit_code == 2 and "error [unauthorized]" in refused.output
