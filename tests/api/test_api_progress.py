"""GET /v1/audits/{id} and the list say where a running audit is: phase and progress, as the worker stores them,
and as the OpenAPI document describes them."""

from __future__ import annotations

from gradaudit.schema import PHASES
from models import audits as audit_rows
from tests.support.api_rows import claim


def _record(services, audit_id: str, phase: str, progress: float) -> None:
    with services.sessions() as db_session:
        assert audit_rows.record_progress(db_session=db_session, audit_id=audit_id, worker_id="worker-1",
                                          phase=phase, progress=progress)


def test_a_queued_audit_has_no_phase_and_a_running_one_says_where_it_is(submit, client, services, torchscript_bytes):
    audit_id = submit(torchscript_bytes).json["id"]
    queued = client.get(f"/v1/audits/{audit_id}").json
    claim(services, audit_id)
    _record(services, audit_id, "probing", 0.3)

    running = client.get(f"/v1/audits/{audit_id}").json
    listed = client.get("/v1/audits").json["items"][0]

    assert (queued["phase"], queued["progress"]) == (None, None)
    assert (running["status"], running["phase"], running["progress"]) == ("running", "probing", 0.3)
    assert (listed["phase"], listed["progress"]) == ("probing", 0.3)


def test_the_document_describes_phase_and_progress(client):
    audit = client.get("/openapi.json").json["components"]["schemas"]["Audit"]["properties"]
    assert audit["phase"]["enum"] == [*PHASES, None]
    assert (audit["progress"]["minimum"], audit["progress"]["maximum"]) == (0, 1)
