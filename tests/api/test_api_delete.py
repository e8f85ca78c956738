"""DELETE /v1/audits/{id}: the owner (or an admin) deletes a queued or finished audit with its layer rows and
deliveries, and the stored files no other audit uses (upload, inputs, patched networks); a running one is 409."""

from __future__ import annotations

import io
import os
import time

import pytest
from sqlalchemy import func, select

from api import create_app
from models import audits as audit_rows
from models import webhooks as webhook_rows
from models.tables import LayerBatchRow, LayerRow, WebhookDelivery
from tests.support.api_rows import bearer, claim, store_result
from tests.support.problems import assert_problem

NETWORK = {"format": "torchscript", "parameters": 23, "layers": 2}


@pytest.fixture
def app(make_settings, sqlite_url):
    return create_app(make_settings(database_url=sqlite_url, auth=True))


def stored(services, content: bytes) -> str:
    """Keep bytes in the artifact store; their sha256."""
    return services.store.save(io.BytesIO(content), max_bytes=len(content) + 1).sha256


def network_named(sha256: str) -> dict:
    return {"sha256": sha256, "size": 10, "format": "onnx"}


@pytest.fixture
def audit_of(services, keys):
    """Insert an audit of stored bytes owned by a key, optionally with inputs; with patched networks (finding
    recommendation's and combined) it is claimed and succeeds naming them. Its id."""

    def insert(upload: bytes = b"the upload", *, inputs: bytes | None = None, patched: bytes | None = None,
               combined: bytes | None = None, owner: str = "alice", run: bool = True) -> str:
        with services.sessions() as db_session:
            audit_id = audit_rows.create_audit(
                db_session=db_session, artifact_sha256=stored(services, upload), artifact_format="torchscript",
                artifact_size=len(upload), filename="net.pt", options={}, owner_key_id=keys[owner][0],
                inputs_sha256=stored(services, inputs) if inputs else None).id
        if run:
            recommendation = {"code": "use_relu", "text": "use ReLU", "layers": ["0"]}
            if patched:
                recommendation["network"] = network_named(stored(services, patched))
            findings = [{"code": "vanishing_gradient", "severity": "critical", "title": "Gradients vanish",
                         "layers": ["0"], "evidence": {}, "confidence": 0.9, "recommendations": [recommendation]}]
            store_result(services, audit_id, {
                "network": NETWORK, "setup": {"device": "cpu"}, "findings": findings, "verdict": "critical",
                "combined": {"network": network_named(stored(services, combined))} if combined else None})
        return audit_id

    return insert


def files(services) -> set[bytes]:
    """The contents of every file in the store."""
    return {path.read_bytes() for path in services.store.root.rglob("*") if path.is_file()}


def rows(services, table) -> int:
    with services.sessions() as db_session:
        return db_session.scalar(select(func.count()).select_from(table))


def test_the_owner_deletes_and_everything_goes(client, services, keys, audit_of):
    audit_id = audit_of(b"upload", inputs=b"inputs", patched=b"patched", combined=b"combined")
    with services.sessions() as db_session:
        webhook_rows.record_delivery(db_session=db_session, audit_id=audit_id, url="https://8.8.8.8/",
                                     attempt=1, status="delivered", response_status=200)

    response = client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys))
    assert response.status_code == 204 and response.get_data() == b""
    assert_problem(client.get(f"/v1/audits/{audit_id}", headers=bearer(keys)), 404, "audit_not_found")
    assert (rows(services, LayerRow), rows(services, LayerBatchRow), rows(services, WebhookDelivery)) == (0, 0, 0)
    assert files(services) == set()
    assert_problem(client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys)), 404, "audit_not_found")


def test_files_another_audit_uses_are_kept(client, services, keys, audit_of):
    doomed = audit_of(b"shared upload", inputs=b"shared inputs", patched=b"patched A", combined=b"shared patch")
    audit_of(b"shared upload", inputs=b"shared inputs", run=False)
    audit_of(b"other upload", patched=b"shared patch", owner="bob")
    audit_of(b"patched A", owner="bob")  # someone downloaded the fix and audits it: an upload now

    assert client.delete(f"/v1/audits/{doomed}", headers=bearer(keys)).status_code == 204
    assert files(services) == {b"shared upload", b"shared inputs", b"patched A", b"shared patch", b"other upload"}


def test_a_file_written_again_after_the_audit_is_kept(client, services, keys, audit_of):
    # An upload of the same bytes rewrites the file before its own row is committed: the file stays for it.
    audit_id = audit_of(b"upload", run=False)
    path = next(path for path in services.store.root.rglob("*") if path.is_file())
    later = time.time() + 60
    os.utime(path, (later, later))

    assert client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys)).status_code == 204
    assert files(services) == {b"upload"}


def test_a_queued_audit_is_deleted(client, services, keys, audit_of):
    audit_id = audit_of(b"upload", run=False)
    assert client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys)).status_code == 204
    assert files(services) == set()


def test_a_running_audit_is_409_and_stays(client, services, keys, audit_of):
    audit_id = audit_of(b"upload", run=False)
    claim(services, audit_id)

    body = assert_problem(client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys)), 409, "audit_not_finished")
    assert body["detail"] == "a running audit cannot be deleted; delete it once it has finished"
    assert client.get(f"/v1/audits/{audit_id}", headers=bearer(keys)).json["status"] == "running"
    assert files(services) == {b"upload"}


def test_another_key_gets_404_and_an_admin_may_delete(client, services, keys, audit_of):
    audit_id = audit_of(b"upload")
    assert_problem(client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys, "bob")), 404, "audit_not_found")
    assert files(services) == {b"upload"}
    assert client.delete(f"/v1/audits/{audit_id}", headers=bearer(keys, "ops")).status_code == 204
    assert files(services) == set()
