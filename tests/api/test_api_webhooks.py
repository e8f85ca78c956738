"""options.webhook_url at submit (refused with invalid_options when the server sends no webhooks, when the URL is
malformed, or when it reaches a non-public address and the server does not allow that) and
GET /v1/audits/{id}/deliveries under the audit's rules of access."""

from __future__ import annotations

import io
import json

import pytest

from api import create_app
from models import api_keys
from models import webhooks as webhook_rows
from tests.support.problems import assert_problem, audit_count

SECRET = "server-webhook-secret-0123456789"


@pytest.fixture
def app(make_settings, sqlite_url):
    """Keys on, a webhook secret, loopback receivers refused (the default)."""
    return create_app(make_settings(database_url=sqlite_url, auth=True, webhook_secret=SECRET))


@pytest.fixture
def keys(services):
    """name -> secret, for alice, bob and the admin ops."""
    made = {}
    with services.sessions() as db_session:
        for name in ("alice", "bob", "ops"):
            made[name] = api_keys.create_key(db_session=db_session, name=name, admin=name == "ops")[1]
    return made


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def post(client, content: bytes, secret: str, **options):
    form = {"model": (io.BytesIO(content), "net.pt"), "options": json.dumps(options)}
    return client.post("/v1/audits", data=form, content_type="multipart/form-data", headers=bearer(secret))


def test_a_public_webhook_is_kept_in_the_options(client, keys, torchscript_bytes):
    response = post(client, torchscript_bytes, keys["alice"], webhook_url="https://8.8.8.8/hooks/gradaudit?t=1")
    assert response.status_code == 202, response.json
    assert response.json["options"]["webhook_url"] == "https://8.8.8.8/hooks/gradaudit?t=1"


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:9000/hook", "127.0.0.1 is a loopback address"),
    ("http://10.2.3.4/hook", "10.2.3.4 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[::1]:9000/hook", "::1 is a loopback address"),
    ("http://localhost:9000/hook", "localhost resolves to"),
])
def test_non_public_webhooks_are_refused_at_submit(client, services, keys, torchscript_bytes, url, says):
    body = assert_problem(post(client, torchscript_bytes, keys["alice"], webhook_url=url), 400, "invalid_options")
    assert says in body["detail"] and "GRADAUDIT_WEBHOOK_ALLOW_PRIVATE" in body["detail"]
    assert body["errors"] == [{"field": "webhook_url", "message": body["detail"]}]
    assert audit_count(services) == 0


def test_loopback_is_accepted_where_the_server_allows_it(make_settings, sqlite_url, torchscript_bytes):
    app = create_app(make_settings(database_url=sqlite_url, webhook_secret=SECRET, webhook_allow_private=True))
    form = {"model": (io.BytesIO(torchscript_bytes), "net.pt"),
            "options": json.dumps({"webhook_url": "http://127.0.0.1:9000/hook"})}
    assert app.test_client().post("/v1/audits", data=form).status_code == 202


def test_a_server_without_a_webhook_secret_refuses_webhooks(make_settings, sqlite_url, torchscript_bytes):
    app = create_app(make_settings(database_url=sqlite_url, webhook_allow_private=True))
    form = {"model": (io.BytesIO(torchscript_bytes), "net.pt"),
            "options": json.dumps({"webhook_url": "http://127.0.0.1:9000/hook"})}
    body = assert_problem(app.test_client().post("/v1/audits", data=form), 400, "invalid_options")
    assert body["detail"] == "this server sends no webhooks: GRADAUDIT_WEBHOOK_SECRET is not set"


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "example.com/hook", "http://user:pw@example.com/"])
def test_malformed_webhook_urls_are_invalid_options(client, keys, torchscript_bytes, url):
    body = assert_problem(post(client, torchscript_bytes, keys["alice"], webhook_url=url), 400, "invalid_options")
    assert [error["field"] for error in body["errors"]] == ["webhook_url"]


def test_deliveries_are_listed_first_first(client, services, keys, torchscript_bytes):
    audit_id = post(client, torchscript_bytes, keys["alice"], webhook_url="https://8.8.8.8/hook").json["id"]
    assert client.get(f"/v1/audits/{audit_id}/deliveries", headers=bearer(keys["alice"])).json == {
        "id": audit_id, "deliveries": []}
    with services.sessions() as db_session:
        for attempt, (status, code) in enumerate([("failed", 503), ("delivered", 204)], start=1):
            webhook_rows.record_delivery(db_session=db_session, audit_id=audit_id, url="https://8.8.8.8/hook",
                                         attempt=attempt, status=status, response_status=code,
                                         error="the receiver answered 503" if code == 503 else None)
    listed = client.get(f"/v1/audits/{audit_id}/deliveries", headers=bearer(keys["alice"])).json["deliveries"]
    assert [(d["attempt"], d["status"], d["response_status"], d["error"]) for d in listed] == [
        (1, "failed", 503, "the receiver answered 503"), (2, "delivered", 204, None)]
    assert listed[0]["delivered_at"] is None and listed[1]["delivered_at"].endswith("Z")
    assert all(d["url"] == "https://8.8.8.8/hook" and d["created_at"].endswith("Z") for d in listed)


def test_deliveries_are_the_owners_and_the_admins_only(client, keys, torchscript_bytes):
    audit_id = post(client, torchscript_bytes, keys["alice"]).json["id"]
    assert_problem(client.get(f"/v1/audits/{audit_id}/deliveries", headers=bearer(keys["bob"])), 404,
                   "audit_not_found")
    assert client.get(f"/v1/audits/{audit_id}/deliveries", headers=bearer(keys["ops"])).status_code == 200
    assert_problem(client.get("/v1/audits/nope/deliveries", headers=bearer(keys["alice"])), 404, "audit_not_found")
