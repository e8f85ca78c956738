"""API keys: 401 without a valid key, each key sees only its own audits, an admin sees all, 429 past the
per-key limit, and the database holds the key's hash, never the key."""

from __future__ import annotations

import io

import pytest

from api import create_app
from models import api_keys
from models import audits as audit_rows
from tests.support.api_rows import SHA256
from tests.support.problems import assert_problem

LIMIT = 2


@pytest.fixture
def app(make_settings, sqlite_url):
    """An app with auth on and at most LIMIT active audits per key."""
    return create_app(make_settings(database_url=sqlite_url, auth=True, max_active_audits_per_key=LIMIT))


@pytest.fixture
def new_key(services):
    """Create a key; returns its secret."""

    def create(name: str = "ci", admin: bool = False) -> str:
        with services.sessions() as db_session:
            return api_keys.create_key(db_session=db_session, name=name, admin=admin)[1]

    return create


def bearer(secret: str) -> dict[str, str]:
    """The header a client sends."""
    return {"Authorization": f"Bearer {secret}"}


def post(client, content: bytes, secret: str | None):
    """POST /v1/audits with `content` as the model, with the key when one is given."""
    headers = bearer(secret) if secret else {}
    form = {"model": (io.BytesIO(content), "net.pt"), "options": "{}"}
    return client.post("/v1/audits", data=form, content_type="multipart/form-data", headers=headers)


ROUTES = [("get", "/v1/audits"), ("post", "/v1/audits"), ("get", "/v1/audits/abc"),
          ("get", "/v1/audits/abc/report"), ("get", "/v1/audits/abc/layers"),
          ("get", "/v1/audits/abc/remedies/use_relu/network"), ("get", "/v1/audits/abc/deliveries"),
          ("delete", "/v1/audits/abc")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_key_is_401_unauthorized(client, method, path):
    response = getattr(client, method)(path)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "ga_nobearer", ""])
def test_a_header_without_a_bearer_key_is_401_unauthorized(client, header):
    assert_problem(client.get("/v1/audits", headers={"Authorization": header}), 401, "unauthorized")


@pytest.mark.parametrize("secret", ["ga_" + "x" * 43, "not-a-key", "ga_" + "y" * 5000])
def test_an_unknown_key_is_401_invalid_api_key(client, new_key, secret):
    new_key()
    response = client.get("/v1/audits", headers=bearer(secret))
    assert_problem(response, 401, "invalid_api_key")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_key_is_401_from_then_on(client, services, new_key):
    secret = new_key()
    assert client.get("/v1/audits", headers=bearer(secret)).status_code == 200
    with services.sessions() as db_session:
        key = api_keys.find_active_key(db_session=db_session, secret=secret)
        assert api_keys.revoke_key(db_session=db_session, key_id=key.id)
        assert not api_keys.revoke_key(db_session=db_session, key_id=key.id)
    assert_problem(client.get("/v1/audits", headers=bearer(secret)), 401, "invalid_api_key")


def test_the_scheme_is_case_insensitive(client, new_key):
    secret = new_key()
    assert client.get("/v1/audits", headers={"Authorization": f"bearer {secret}"}).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json"])
def test_health_and_the_document_stay_public(client, path):
    assert client.get(path).status_code in (200, 503)


def test_an_audit_belongs_to_the_key_that_created_it(client, services, new_key, torchscript_bytes):
    secret = new_key()
    audit_id = post(client, torchscript_bytes, secret).json["id"]
    with services.sessions() as db_session:
        owner = api_keys.find_active_key(db_session=db_session, secret=secret)
        assert audit_rows.get_audit(db_session=db_session, audit_id=audit_id).owner_key_id == owner.id


@pytest.mark.parametrize("suffix", ["", "/report", "/layers", "/remedies/combined/network", "/deliveries"])
def test_another_key_gets_404_as_for_a_missing_audit(client, new_key, torchscript_bytes, suffix):
    alice, bob = new_key("alice"), new_key("bob")
    audit_id = post(client, torchscript_bytes, alice).json["id"]

    refused = assert_problem(client.get(f"/v1/audits/{audit_id}{suffix}", headers=bearer(bob)), 404, "audit_not_found")
    assert refused["detail"] == f"there is no audit with id {audit_id!r}"
    assert client.get(f"/v1/audits/{audit_id}{suffix}", headers=bearer(alice)).status_code in (200, 409)


def test_lists_hold_only_the_callers_audits(client, new_key, torchscript_bytes):
    alice, bob = new_key("alice"), new_key("bob")
    alices = {post(client, torchscript_bytes, alice).json["id"] for _ in range(2)}
    bobs = {post(client, torchscript_bytes, bob).json["id"]}

    for secret, own in ((alice, alices), (bob, bobs)):
        page = client.get("/v1/audits", headers=bearer(secret)).json
        assert ({item["id"] for item in page["items"]}, page["total"]) == (own, len(own))


def test_an_admin_key_sees_every_audit(client, services, new_key, torchscript_bytes):
    alice, admin = new_key("alice"), new_key("ops", admin=True)
    alices = post(client, torchscript_bytes, alice).json["id"]
    with services.sessions() as db_session:  # made while auth was off: no owner
        ownerless = audit_rows.create_audit(db_session=db_session, artifact_sha256=SHA256,
                                            artifact_format="torchscript", artifact_size=1, options={}).id

    page = client.get("/v1/audits", headers=bearer(admin)).json
    assert {item["id"] for item in page["items"]} == {alices, ownerless} and page["total"] == 2
    assert client.get(f"/v1/audits/{alices}", headers=bearer(admin)).status_code == 200
    assert client.get(f"/v1/audits/{ownerless}", headers=bearer(admin)).status_code == 200
    assert_problem(client.get(f"/v1/audits/{ownerless}", headers=bearer(alice)), 404, "audit_not_found")


def test_past_the_limit_of_active_audits_429_with_retry_after(client, services, new_key, torchscript_bytes):
    alice, bob = new_key("alice"), new_key("bob")
    first = [post(client, torchscript_bytes, alice) for _ in range(LIMIT)]
    assert [response.status_code for response in first] == [202] * LIMIT

    refused = post(client, torchscript_bytes, alice)
    body = assert_problem(refused, 429, "too_many_active_audits")
    assert int(refused.headers["Retry-After"]) > 0 and str(LIMIT) in body["detail"]
    assert post(client, torchscript_bytes, bob).status_code == 202  # the limit is per key

    with services.sessions() as db_session:  # one of alice's finishes: a slot is free again
        audit_rows.fail_audit(db_session=db_session, audit_id=first[0].json["id"], code="forward_failed", detail="x")
    assert post(client, torchscript_bytes, alice).status_code == 202


def test_the_database_holds_the_hash_never_the_key(client, app, new_key, tmp_path, torchscript_bytes):
    secret = new_key()
    assert post(client, torchscript_bytes, secret).status_code == 202
    app.extensions["gradaudit"].sessions.kw["bind"].dispose()

    stored = b"".join(path.read_bytes() for path in tmp_path.glob("gradaudit.db*"))
    assert api_keys.hash_key(secret).encode() in stored
    assert secret.encode() not in stored
    assert secret[len(api_keys.display_prefix(secret)):].encode() not in stored  # not even the secret part


def test_keys_are_long_random_and_listed_by_prefix(services, new_key):
    secrets = {new_key(f"k{n}") for n in range(3)}
    assert len(secrets) == 3 and all(s.startswith("ga_") and len(s) == 46 for s in secrets)
    with services.sessions() as db_session:
        listed = api_keys.list_keys(db_session=db_session)
        assert sorted(key.prefix for key in listed) == sorted(api_keys.display_prefix(s) for s in secrets)
        one = listed[0]
        assert [key.id for key in api_keys.matching_keys(db_session=db_session, reference=one.prefix)] == [one.id]
        assert [key.id for key in api_keys.matching_keys(db_session=db_session, reference=one.id)] == [one.id]


def test_the_document_describes_bearer_keys(client):
    document = client.get("/openapi.json").json
    assert document["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    assert document["security"] == [{"apiKey": []}]
    for path in ("/healthz", "/openapi.json"):
        assert document["paths"][path]["get"]["security"] == []
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                assert "401" in operation["responses"], path
    assert "429" in document["paths"]["/v1/audits"]["post"]["responses"]
