"""GET /v1/audits/<id>, /report and /layers across an audit's life."""

from __future__ import annotations

import pytest

from models import audits as audit_rows
from tests.support.api_rows import LAYERS, SHA256, claim, store_result
from tests.support.problems import assert_problem

NETWORK = {"format": "torchscript", "parameters": 23, "layers": 2}
SETUP = {"device": "cpu", "batch_size": 8, "seed": 0, "loss": "sum", "input_shapes": {"x": [8, 4]}}
FINDINGS = [{"code": "vanishing_gradients", "severity": "warning", "title": "Gradients shrink toward the input",
             "layers": ["0"], "evidence": {"ratio": 1e-6},
             "recommendations": [{"code": "residual", "text": "add skip connections"}]}]


# What the report adds to a layer stored without per-batch rows.
UNMEASURED = {"output_grad": None, "activation": None}



def succeed(services, audit_id: str) -> None:
    """Claim the audit and store a fabricated engine result."""
    store_result(services, audit_id, {"network": NETWORK, "setup": SETUP, "findings": FINDINGS, "verdict": "warning"})


def fail(services, audit_id: str, code: str, detail: str) -> None:
    """Mark the audit failed, as the task does on an engine error."""
    with services.sessions() as db_session:
        assert audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=code, detail=detail)


def test_get_queued_audit(client, new_audit):
    audit_id = new_audit()
    response = client.get(f"/v1/audits/{audit_id}")

    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["id", "status", "created_at", "started_at", "finished_at", "attempts", "phase",
                          "progress", "artifact", "options", "verdict", "links"]
    assert body["id"] == audit_id and body["status"] == "queued"
    assert body["phase"] is None and body["progress"] is None  # nothing has run
    assert body["created_at"].endswith("Z")
    assert body["links"] == {"self": f"/v1/audits/{audit_id}", "report": f"/v1/audits/{audit_id}/report",
                             "layers": f"/v1/audits/{audit_id}/layers"}


def test_get_unknown_audit(client):
    body = assert_problem(client.get("/v1/audits/nope"), 404, "audit_not_found")
    assert body["detail"] == "there is no audit with id 'nope'"


@pytest.mark.parametrize("resource", ["report", "layers"])
def test_unknown_audit_has_no_report(resource, client):
    assert_problem(client.get(f"/v1/audits/nope/{resource}"), 404, "audit_not_found")


@pytest.mark.parametrize("resource", ["report", "layers"])
def test_queued_audit_is_not_finished(resource, client, new_audit):
    audit_id = new_audit()
    body = assert_problem(client.get(f"/v1/audits/{audit_id}/{resource}"), 409, "audit_not_finished")
    assert body["audit_status"] == "queued"
    assert body["detail"] == f"the audit is queued; poll /v1/audits/{audit_id}"


def test_running_audit_is_not_finished(client, services, new_audit):
    audit_id = new_audit()
    claim(services, audit_id)

    refused = assert_problem(client.get(f"/v1/audits/{audit_id}/report"), 409, "audit_not_finished")
    assert refused["audit_status"] == "running"
    running = client.get(f"/v1/audits/{audit_id}").get_json()
    assert running["status"] == "running" and running["attempts"] == 1 and running["started_at"].endswith("Z")


@pytest.mark.parametrize(
    ("code", "status"),
    [("input_shape_required", 422), ("unsupported_operator", 422), ("time_limit_exceeded", 422),
     ("worker_lost", 503), ("broker_unavailable", 503), ("internal_error", 500)],
)
@pytest.mark.parametrize("resource", ["report", "layers"])
def test_failed_audit_answers_with_its_stored_code(resource, code, status, client, services, new_audit):
    audit_id = new_audit()
    fail(services, audit_id, code, f"detail of {code}")

    body = assert_problem(client.get(f"/v1/audits/{audit_id}/{resource}"), status, code)
    assert body["detail"] == f"detail of {code}"
    assert body["id"] == audit_id and body["audit_status"] == "failed"
    assert body["title"] == "The audit failed"


def test_failed_audit_status_document_carries_the_error(client, services, new_audit):
    audit_id = new_audit()
    fail(services, audit_id, "input_shape_required", "give --input-shape x=1x4")

    body = client.get(f"/v1/audits/{audit_id}").get_json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "input_shape_required", "detail": "give --input-shape x=1x4"}
    assert body["finished_at"].endswith("Z")


def test_report_of_succeeded_audit(client, services, new_audit):
    audit_id = new_audit()
    succeed(services, audit_id)

    response = client.get(f"/v1/audits/{audit_id}/report")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {
        "id": audit_id,
        "status": "succeeded",
        "report_version": 1,
        "network": {"format": "torchscript", "sha256": SHA256, "parameters": 23, "layers": 2},
        "setup": SETUP,
        "layers": [{**LAYERS[1], **UNMEASURED}, {**LAYERS[0], **UNMEASURED}],
        "findings": FINDINGS,
        "verdict": "warning",
        "combined": None,
    }


def test_report_layers_carry_all_twelve_statistics_then_the_output_statistics(client, services, new_audit):
    audit_id = new_audit()
    succeed(services, audit_id)

    for row in client.get(f"/v1/audits/{audit_id}/report").get_json()["layers"]:
        assert list(row) == ["name", "kind", "depth", "parameters", "weight_norm", "grad_norm", "grad_mean_abs",
                             "grad_std", "grad_max_abs", "grad_zero_fraction", "grad_nonfinite", "grad_to_weight",
                             "output_grad", "activation"]


def test_layers_of_succeeded_audit_ordered_by_depth(client, services, new_audit):
    audit_id = new_audit()
    succeed(services, audit_id)

    response = client.get(f"/v1/audits/{audit_id}/layers")
    assert response.status_code == 200
    assert response.get_json() == {"id": audit_id, "layers": [{**LAYERS[1], **UNMEASURED}, {**LAYERS[0], **UNMEASURED}]}


def test_succeeded_status_document(client, services, new_audit):
    audit_id = new_audit()
    succeed(services, audit_id)

    body = client.get(f"/v1/audits/{audit_id}").get_json()
    assert (body["status"], body["verdict"], body["attempts"]) == ("succeeded", "warning", 1)
    assert "error" not in body
