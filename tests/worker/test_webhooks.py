"""worker.webhooks against a real local receiver (loopback allowed by the setting, as in every test): the POST is
signed so the receiver's check passes, each attempt is a row, a refusal at send time (the setting off, a name now
resolving to loopback, no secret) sends nothing, a redirect is not followed, a slow receiver times out, and a
finished audit with nowhere to go, or already delivered, is skipped."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from gradaudit.queue import DELIVER_WEBHOOK
from models import api_keys
from models import audits as audit_rows
from models import webhooks as webhook_rows
from tests.support.db import RESULT, claim, fail, new_audit, succeed
from tests.support.receiver import Receiver, key_secret, verifies
from worker import webhooks
from worker.context import build_context

SECRET = "server-webhook-secret-0123456789"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def context(make_settings, sqlite_url):
    return build_context(make_settings(database_url=sqlite_url, webhook_secret=SECRET, webhook_allow_private=True,
                                       webhook_backoff_s=0.5))


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def finished_audit(db, url: str | None, *, failed: bool = False, **fields) -> str:
    """An audit that names `url` as its webhook, claimed and finished."""
    options = {"webhook_url": url} if url else {}
    audit_id = new_audit(db, options=options, **fields).id
    claim(db, audit_id)
    assert fail(db, audit_id, "w1", code="invalid_onnx", detail="not ONNX") if failed else succeed(db, audit_id)
    return audit_id


def deliveries(context, audit_id: str) -> list[tuple]:
    with context.sessions() as db_session:
        return [(d.attempt, d.status, d.response_status, d.error)
                for d in webhook_rows.list_deliveries(db_session=db_session, audit_id=audit_id)]


def test_a_finished_audit_is_posted_signed_and_recorded(context, receiver, db):
    audit_id = finished_audit(db, receiver.url)
    outcome = webhooks.deliver(context, audit_id, attempt=1)

    assert outcome == webhooks.Outcome("delivered", response_status=200)
    [request] = receiver.received
    assert request.path == "/hooks/gradaudit"
    assert verifies(key_secret(SECRET, None), request)
    assert abs(int(request.headers["X-Gradaudit-Timestamp"]) - time.time()) < 5
    assert request.headers["Host"] == receiver.url.split("/")[2]
    assert request.headers["X-Gradaudit-Event"] == "audit.finished"
    body = json.loads(request.body)
    assert body["event"] == "audit.finished"
    assert {key: body["audit"][key] for key in ("id", "status", "verdict", "findings")} == {
        "id": audit_id, "status": "succeeded", "verdict": RESULT["verdict"], "findings": []}
    assert body["audit"]["links"]["deliveries"] == f"/v1/audits/{audit_id}/deliveries"
    assert deliveries(context, audit_id) == [(1, "delivered", 200, None)]


def test_a_tampered_body_or_another_keys_secret_does_not_verify(context, receiver, db):
    webhooks.deliver(context, finished_audit(db, receiver.url), attempt=1)
    [request] = receiver.received
    assert not verifies(key_secret(SECRET, "some-key"), request)
    assert not verifies(key_secret(SECRET, None), type(request)(request.path, request.headers,
                                                                request.body.replace(b"succeeded", b"failed"),
                                                                request.at))


def test_a_failed_audit_carries_its_error(context, receiver, db):
    audit_id = finished_audit(db, receiver.url, failed=True)
    webhooks.deliver(context, audit_id, attempt=1)
    audit = json.loads(receiver.received[0].body)["audit"]
    assert (audit["status"], audit["error"]) == ("failed", {"code": "invalid_onnx", "detail": "not ONNX"})


def test_a_keys_default_url_and_secret_are_used(context, receiver, db):
    with context.sessions() as db_session:
        key, _secret = api_keys.create_key(db_session=db_session, name="ci", webhook_url=receiver.url)
    audit_id = finished_audit(db, None, owner_key_id=key.id)
    assert webhooks.deliver(context, audit_id, attempt=1).status == "delivered"
    assert verifies(key_secret(SECRET, key.id), receiver.received[0])
    assert not verifies(key_secret(SECRET, None), receiver.received[0])


def test_an_error_status_is_a_failed_attempt_to_retry(context, db):
    failing = Receiver(statuses=(503,))
    try:
        audit_id = finished_audit(db, failing.url)
        outcome = webhooks.deliver(context, audit_id, attempt=1)
    finally:
        failing.close()
    assert (outcome.status, outcome.retry) == ("failed", True)
    assert deliveries(context, audit_id) == [(1, "failed", 503, "the receiver answered 503")]


def test_a_redirect_is_not_followed(context, receiver, db):
    redirecting = Receiver(statuses=(302,), location=receiver.url)
    try:
        audit_id = finished_audit(db, redirecting.url)
        outcome = webhooks.deliver(context, audit_id, attempt=1)
    finally:
        redirecting.close()
    assert (outcome.status, outcome.response_status, outcome.error) == ("failed", 302, "redirects are not followed")
    assert receiver.received == []


def test_no_one_listening_is_a_failed_attempt(context, db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    audit_id = finished_audit(db, f"http://127.0.0.1:{closed_port}/hook")
    outcome = webhooks.deliver(context, audit_id, attempt=1)
    assert (outcome.status, outcome.retry) == ("failed", True) and "refused" in outcome.error.lower()


def test_a_slow_receiver_times_out(context, monkeypatch, db):
    monkeypatch.setattr(webhooks, "READ_TIMEOUT_S", 0.3)
    slow = Receiver(delay_s=2)
    try:
        outcome = webhooks.deliver(context, finished_audit(db, slow.url), attempt=1)
    finally:
        slow.close()
    assert (outcome.status, outcome.retry) == ("failed", True) and "timed out" in outcome.error


def test_loopback_is_refused_at_send_time_without_the_setting(make_settings, sqlite_url, receiver, db):
    context = build_context(make_settings(database_url=sqlite_url, webhook_secret=SECRET))
    audit_id = finished_audit(db, receiver.url)  # accepted while the setting allowed it, say
    outcome = webhooks.deliver(context, audit_id, attempt=1)
    assert (outcome.status, outcome.retry) == ("refused", False)
    assert receiver.received == []
    assert "127.0.0.1 is a loopback address" in deliveries(context, audit_id)[0][3]


def test_a_name_that_now_resolves_to_loopback_is_refused(make_settings, sqlite_url, receiver, monkeypatch, db):
    context = build_context(make_settings(database_url=sqlite_url, webhook_secret=SECRET))
    port = int(receiver.url.split(":")[2].split("/")[0])
    audit_id = finished_audit(db, f"http://hooks.example:{port}/in")  # public when it was submitted
    rebound = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: rebound)

    assert webhooks.deliver(context, audit_id, attempt=1).status == "refused"
    assert receiver.received == []
    assert deliveries(context, audit_id)[0][3].startswith("hooks.example resolves to 127.0.0.1, a loopback address")


def test_without_a_secret_nothing_is_sent(make_settings, sqlite_url, receiver, db):
    context = build_context(make_settings(database_url=sqlite_url, webhook_allow_private=True))
    audit_id = finished_audit(db, receiver.url)
    assert webhooks.deliver(context, audit_id, attempt=1) == webhooks.Outcome(
        "refused", error="GRADAUDIT_WEBHOOK_SECRET is not set: there is nothing to sign with")
    assert receiver.received == []


def test_nothing_to_send_is_skipped(context, receiver, db):
    unfinished = new_audit(db, options={"webhook_url": receiver.url}).id
    nowhere = finished_audit(db, None)
    delivered = finished_audit(db, receiver.url)
    webhooks.deliver(context, delivered, attempt=1)

    for audit_id in (unfinished, nowhere, delivered, "no-such-audit"):
        assert webhooks.deliver(context, audit_id, attempt=2).status == "skipped"
    assert len(receiver.received) == 1
    assert deliveries(context, delivered) == [(1, "delivered", 200, None)]


def test_the_backoff_doubles_and_is_capped(context):
    waits = [webhooks.backoff_s(context.settings, attempt) for attempt in range(1, 5)]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    patient = context.settings.model_copy(update={"webhook_backoff_s": 100.0})
    assert webhooks.backoff_s(patient, 10) == 510.0  # half the broker's visibility timeout (the hard limit + 60 s)
    long_audits = patient.model_copy(update={"soft_time_limit_s": 3000, "hard_time_limit_s": 3600})
    assert webhooks.backoff_s(long_audits, 10) == webhooks.MAX_BACKOFF_S


def test_a_finished_audit_with_a_webhook_is_queued(context, receiver, db):
    sent = []

    class Celery:
        def send_task(self, name, args, queue):
            sent.append((name, args, queue))

    with_hook, without = finished_audit(db, receiver.url), finished_audit(db, None)
    assert webhooks.announce_finish(context, Celery(), with_hook)
    assert not webhooks.announce_finish(context, Celery(), without)
    assert sent == [(DELIVER_WEBHOOK, [with_hook], "webhooks")]


def test_a_broker_failure_never_reaches_the_audit(context, receiver, db):
    class Down:
        def send_task(self, *args, **kwargs):
            raise ConnectionError("broker down")

    audit_id = finished_audit(db, receiver.url)
    assert not webhooks.announce_finish(context, Down(), audit_id)
    with context.sessions() as db_session:
        assert audit_rows.get_audit(db_session=db_session, audit_id=audit_id).status == "succeeded"


def readme_verify():
    """The receiver's check the README's Webhooks section gives, run as written."""
    section = README.read_text().split("\n## Webhooks\n", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 (our own README)
    return namespace["verify"]


def test_the_readmes_snippet_verifies_a_delivery(context, receiver, db):
    verify = readme_verify()
    webhooks.deliver(context, finished_audit(db, receiver.url), attempt=1)
    [request] = receiver.received
    stamp, signed = request.headers["X-Gradaudit-Timestamp"], request.headers["X-Gradaudit-Signature"]
    assert verify(key_secret(SECRET, None), stamp, signed, request.body)
    assert not verify(key_secret(SECRET, None), stamp, signed, request.body + b" ")
    assert not verify(key_secret(SECRET, "another-key"), stamp, signed, request.body)
    assert not verify(key_secret(SECRET, None), stamp, signed, request.body, tolerance_s=-1)  # too old


@pytest.fixture
def tls_receiver(tmp_path):
    """A receiver on https://127.0.0.1 with a self-signed certificate for that address; (receiver, its cert)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    receiver = Receiver()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver._server.socket = context.wrap_socket(receiver._server.socket, server_side=True)
    yield receiver, cert
    receiver.close()


def test_https_checks_the_receivers_certificate(context, db, tls_receiver, monkeypatch):
    receiver, cert = tls_receiver
    url = receiver.url.replace("http://", "https://")
    untrusted = webhooks.deliver(context, finished_audit(db, url), attempt=1)
    assert (untrusted.status, untrusted.retry) == ("failed", True) and "CERTIFICATE_VERIFY_FAILED" in untrusted.error

    monkeypatch.setattr(webhooks.certifi, "where", lambda: str(cert))  # as if a CA the bundle holds had signed it
    trusted = webhooks.deliver(context, finished_audit(db, url), attempt=1)
    assert trusted.status == "delivered" and verifies(key_secret(SECRET, None), receiver.received[-1])
