"""GET /v1/audits/<id>/compare/<base_id>: the audit's report against its baseline's, under the report's rules of
access (both the caller's key's, both succeeded)."""

from __future__ import annotations

import json

import pytest

from api import create_app
from gradaudit.compare import compare_reports
from models import audits as audit_rows
from tests.support.api_rows import SHA256, bearer, claim, create_keys, store_result
from tests.support.problems import assert_problem
from tests.support.reports import NETWORK, RELU_LAYERS, SETUP, SIGMOID_LAYERS, finding


@pytest.fixture
def app(make_settings, sqlite_url):
    """An app with API keys on."""
    return create_app(make_settings(database_url=sqlite_url, auth=True))


@pytest.fixture
def keys(services):
    """alice's and bob's keys: name -> (key id, secret)."""
    return create_keys(services, ("alice", "bob"))


@pytest.fixture
def audit_of(services, keys):
    """Insert an audit owned by a key; given layers and findings, store them as the worker does; given a failure
    code, fail it. Returns its id."""

    def insert(layers=None, findings=(), *, owner="alice", failure=None) -> str:
        with services.sessions() as db_session:
            audit_id = audit_rows.create_audit(db_session=db_session, artifact_sha256=SHA256, artifact_format="onnx",
                                               artifact_size=100, filename="net.onnx", options={},
                                               owner_key_id=keys[owner][0]).id
        if failure:
            claim(services, audit_id)
            with services.sessions() as db_session:
                audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=failure, detail="no shapes")
        elif layers is not None:
            verdict = "critical" if any(f["severity"] == "critical" for f in findings) else "healthy"
            store_result(services, audit_id, {"network": NETWORK, "setup": SETUP, "findings": list(findings),
                                              "verdict": verdict}, layers)
        return audit_id

    return insert


def get(client, keys, path: str, key: str = "alice"):
    """GET as the named key's holder."""
    return client.get(path, headers=bearer(keys, key))


def test_a_sigmoid_version_against_its_relu_baseline_is_a_regression(client, keys, audit_of):
    relu = audit_of(RELU_LAYERS)
    sigmoid = audit_of(SIGMOID_LAYERS, [finding("vanishing_gradient", "critical")])

    response = get(client, keys, f"/v1/audits/{sigmoid}/compare/{relu}")

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    reports = [get(client, keys, f"/v1/audits/{audit_id}/report").get_json() for audit_id in (sigmoid, relu)]
    assert body == json.loads(json.dumps(compare_reports(*reports)))  # the view adds nothing of its own
    assert (body["audit_id"], body["baseline_id"]) == (sigmoid, relu)
    assert body["regression"] is True and body["verdict"] == {"before": "healthy", "after": "critical"}
    assert [f["code"] for f in body["findings"]["added"]] == ["vanishing_gradient"]
    assert (body["layers"]["only_in_audit"], body["layers"]["only_in_baseline"]) == (["/1/Sigmoid"], ["/1/Relu"])
    first = body["layers"]["matched"][0]
    assert first["name"] == "/0/Gemm" and first["grad_norm"]["decades"] == pytest.approx(-3)


def test_the_relu_version_against_the_sigmoid_baseline_is_none(client, keys, audit_of):
    relu = audit_of(RELU_LAYERS)
    sigmoid = audit_of(SIGMOID_LAYERS, [finding("vanishing_gradient", "critical")])

    body = get(client, keys, f"/v1/audits/{relu}/compare/{sigmoid}").get_json()

    assert body["regression"] is False and body["reasons"] == []
    assert [f["code"] for f in body["findings"]["removed"]] == ["vanishing_gradient"]


@pytest.mark.parametrize("unknown", ["audit", "baseline"])
def test_another_key_s_audit_is_not_found(client, keys, audit_of, unknown):
    mine, theirs = audit_of(RELU_LAYERS), audit_of(RELU_LAYERS, owner="bob")
    path = f"/v1/audits/{theirs}/compare/{mine}" if unknown == "audit" else f"/v1/audits/{mine}/compare/{theirs}"

    body = assert_problem(get(client, keys, path), 404, "audit_not_found")
    assert theirs in body["detail"]


def test_an_unknown_id_is_404_even_beside_an_unfinished_audit(client, keys, audit_of):
    queued = audit_of()
    assert_problem(get(client, keys, f"/v1/audits/{queued}/compare/nope"), 404, "audit_not_found")


def test_an_unfinished_audit_is_409(client, keys, audit_of):
    done, queued = audit_of(RELU_LAYERS), audit_of()
    body = assert_problem(get(client, keys, f"/v1/audits/{done}/compare/{queued}"), 409, "audit_not_finished")
    assert body["audit_status"] == "queued"


def test_a_failed_audit_answers_with_its_own_code(client, keys, audit_of):
    done, failed = audit_of(RELU_LAYERS), audit_of(failure="input_shape_required")
    body = assert_problem(get(client, keys, f"/v1/audits/{failed}/compare/{done}"), 422, "input_shape_required")
    assert body["id"] == failed


def test_without_a_key_it_is_401(client, audit_of):
    done = audit_of(RELU_LAYERS)
    assert_problem(client.get(f"/v1/audits/{done}/compare/{done}"), 401, "unauthorized")


def test_the_document_describes_it(client):
    operation = client.get("/openapi.json").get_json()["paths"]["/v1/audits/{audit_id}/compare/{base_id}"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Comparison"}
    assert {"401", "404", "409", "422"} <= set(operation["responses"])
