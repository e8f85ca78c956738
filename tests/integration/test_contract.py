"""Fuzzing the contract: schemathesis generates requests for every operation of the live /openapi.json of a
`gradaudit serve` with API keys on, and checks each answer: never a 5xx, a documented status, the documented
content type and headers, a body valid against the document. Bounded and derandomized, so it is reproducible."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import onnx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from torch import nn

from api.openapi import DOCUMENT
from tests.support.keyed_serve import serving_with_a_key
from tests.support.stack import mlp, save_onnx, save_torchscript

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES = 25
OPERATIONS = [(method.upper(), path) for path, operations in DOCUMENT["paths"].items() for method in operations]
SECURED = [(method, path) for method, path in OPERATIONS if path.startswith("/v1/")]


class Live:
    """A served API with keys on, the secret of one key, and its document as schemathesis loaded it."""

    def __init__(self, url: str, secret: str):
        self.url, self.secret = url, secret
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.document = requests.get(f"{url}/openapi.json", timeout=10).json()
        # from_dict, not from_url: from_url leaves out the operation that serves the document itself.
        self.schema = schemathesis.openapi.from_dict(self.document)

    def operation(self, method: str, path: str):
        """The loaded operation."""
        return self.schema[path][method]

    def finished_audit(self, network: Path, options: str) -> str:
        """Submit a network as the key holder and wait until its audit finished; its id."""
        with network.open("rb") as network_file:
            response = requests.post(f"{self.url}/v1/audits", files={"model": (network.name, network_file)},
                                     data={"options": options}, headers=self.headers, timeout=60)
        assert response.status_code == 202, response.text
        audit_id, deadline = response.json()["id"], time.monotonic() + 180
        while time.monotonic() < deadline:
            audit = requests.get(f"{self.url}/v1/audits/{audit_id}", headers=self.headers, timeout=10).json()
            if audit["status"] in ("succeeded", "failed"):
                return audit_id
            time.sleep(0.3)
        raise AssertionError(f"audit {audit_id} never finished")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`gradaudit serve` with GRADAUDIT_AUTH=on and a key made by `gradaudit keys create`."""
    tmp_path = tmp_path_factory.mktemp("contract")
    with serving_with_a_key(tmp_path, "fuzz") as (url, secret):
        running = Live(url, secret)
        # Real audits, so the list, the audit, its report and its layers are fuzzed on rows, not only on 404s.
        running.network = save_onnx(mlp(2, nn.ReLU), tmp_path / "net.onnx")
        running.audits = {
            "succeeded": running.finished_audit(running.network, '{"input_shapes": {"x": [4, 32]}}'),
            # TorchScript declares no input shapes: input_shape_required.
            "failed": running.finished_audit(save_torchscript(mlp(2, nn.ReLU), tmp_path / "net.pt"), "{}"),
            # Vanishing gradients whose verified fixes keep patched networks: the download is fuzzed on them.
            "remedied": running.finished_audit(save_onnx(mlp(11, nn.Sigmoid), tmp_path / "deep.onnx"), "{}"),
        }
        yield running


def fuzz(live: Live, operation, headers: dict[str, str] | None, mode=schemathesis.GenerationMode.POSITIVE,
         prepare=lambda case: None) -> set[int]:
    """EXAMPLES generated requests to one operation (each first given to prepare), each answer put through every
    check; the statuses seen."""
    seen: set[int] = set()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case):
        prepare(case)
        seen.add(case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=30).status_code)
    one()
    return seen


def test_the_served_document_is_the_one_fuzzed(live):
    assert live.document == json.loads(json.dumps(DOCUMENT))
    assert sorted(operation.ok().label for operation in live.schema.get_all_operations()) == \
        sorted(f"{method} {path}" for method, path in OPERATIONS)


def key_in_the_form(live: Live):
    """For the key form: the valid key as its field, where the fuzzed header key means nothing."""
    def prepare(case):
        case.body = {**(case.body or {}), "api_key": live.secret}
    return prepare


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_keeps_the_contract_with_a_key(live, method, path):
    prepare = key_in_the_form(live) if path == "/session" else lambda case: None
    seen = fuzz(live, live.operation(method, path), live.headers, prepare=prepare)
    print(method, path, sorted(seen))
    assert 401 not in seen and seen, seen


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer ga_not-a-key"}], ids=["no key", "a wrong key"])
@pytest.mark.parametrize(("method", "path"), SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_every_secured_operation_keeps_the_contract_without_a_valid_key(live, method, path, headers):
    assert fuzz(live, live.operation(method, path), headers) == {401}


@pytest.mark.parametrize(("method", "path"), SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_invalid_requests_get_a_documented_answer(live, method, path):
    seen = fuzz(live, live.operation(method, path), live.headers,
                schemathesis.GenerationMode.NEGATIVE)
    print(method, path, sorted(seen))
    # Negative cases also mangle the Authorization header (a 401, documented); the rest reach the views.
    assert seen - {401} and all(status < 500 for status in seen), seen


PATCHED_NETWORK = "/v1/audits/{audit_id}/remedies/{code}/network"
COMPARE = "/v1/audits/{audit_id}/compare/{base_id}"
AUDIT_OPERATIONS = [path for method, path in OPERATIONS
                    if method == "GET" and "{audit_id}" in path and path not in (PATCHED_NETWORK, COMPARE)]
# What a failed audit still answers with 200; the rest answer with its failure (422).
FAILED_AUDIT_OK = {"/v1/audits/{audit_id}", "/v1/audits/{audit_id}/deliveries"}


@pytest.mark.parametrize("path", AUDIT_OPERATIONS)
@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_a_finished_audit_is_answered_as_documented(live, path, outcome):
    case = live.operation("GET", path).Case(path_parameters={"audit_id": live.audits[outcome]})
    response = case.call_and_validate(base_url=live.url, headers=live.headers, checks=CHECKS, timeout=30)
    assert response.status_code == (200 if outcome == "succeeded" or path in FAILED_AUDIT_OK else 422)


def test_deleting_an_audit_is_answered_as_documented(live):
    audit_id = live.finished_audit(live.network, '{"input_shapes": {"x": [4, 32]}, "verify_remedies": false}')
    for status in (204, 404):
        case = live.operation("DELETE", "/v1/audits/{audit_id}").Case(path_parameters={"audit_id": audit_id})
        response = case.call_and_validate(base_url=live.url, headers=live.headers, checks=CHECKS, timeout=30)
        assert response.status_code == status, response.text


def test_patched_networks_are_answered_as_documented(live):
    report = requests.get(f"{live.url}/v1/audits/{live.audits['remedied']}/report", headers=live.headers,
                          timeout=10).json()
    kept = [recommendation for finding in report["findings"] for recommendation in finding["recommendations"]
            if "network" in recommendation]
    assert kept and report["combined"]["network"], report["setup"]["remedies"]
    answers = {}
    for outcome, code, status in (("remedied", kept[0]["code"], 200), ("remedied", "combined", 200),
                                  ("remedied", "no_such_fix", 404), ("failed", "combined", 422)):
        case = live.operation("GET", PATCHED_NETWORK).Case(
            path_parameters={"audit_id": live.audits[outcome], "code": code})
        response = case.call_and_validate(base_url=live.url, headers=live.headers, checks=CHECKS, timeout=30)
        assert response.status_code == status, response.text
        answers[outcome, code] = response
    assert hashlib.sha256(answers["remedied", kept[0]["code"]].content).hexdigest() == kept[0]["network"]["sha256"]
    assert onnx.load_from_string(answers["remedied", "combined"].content).graph.node


@pytest.mark.parametrize(("audit", "baseline", "status"), [
    ("remedied", "succeeded", 200), ("succeeded", "remedied", 200), ("succeeded", "succeeded", 200),
    ("succeeded", "failed", 422), ("failed", "succeeded", 422), ("succeeded", None, 404),
])
def test_comparisons_of_finished_audits_are_answered_as_documented(live, audit, baseline, status):
    parameters = {"audit_id": live.audits[audit], "base_id": live.audits[baseline] if baseline else "nope"}
    case = live.operation("GET", COMPARE).Case(path_parameters=parameters)
    response = case.call_and_validate(base_url=live.url, headers=live.headers, checks=CHECKS, timeout=30)
    assert response.status_code == status, response.text
    if audit == baseline:
        assert response.json()["regression"] is False
    if audit == "remedied":
        assert response.json()["regression"] is True  # the deep sigmoid stack is critical, the small MLP not


def test_the_list_of_finished_audits_is_answered_as_documented(live):
    seen = fuzz(live, live.operation("GET", "/v1/audits"), live.headers)
    listed = requests.get(f"{live.url}/v1/audits", headers=live.headers, timeout=10).json()
    assert 200 in seen and {item["id"] for item in listed["items"]} >= set(live.audits.values())


def test_fuzzed_options_beside_a_real_network_are_answered_as_documented(live):
    def real_network(case):
        case.body["model"] = live.network.read_bytes()

    seen = fuzz(live, live.operation("POST", "/v1/audits"), live.headers, prepare=real_network)
    print("POST /v1/audits, a real network", sorted(seen))
    # Generated options are mostly no AuditOptions (invalid_options); "{}" and the like queue an audit.
    assert 400 in seen and seen <= {202, 400, 413, 429}, seen


def test_the_checks_catch_a_document_that_lies_about_the_answers(live):
    lying = json.loads(json.dumps(live.document))
    del lying["paths"]["/v1/audits/{audit_id}"]["get"]["responses"]["404"]
    lying["components"]["schemas"]["AuditPage"]["required"] = ["no_such_field"]
    schema = schemathesis.openapi.from_dict(lying)
    lies = (("/v1/audits/{audit_id}", {"audit_id": "nope"}, "Undocumented status code"),
            ("/v1/audits", None, "Response violates schema"))
    for path, parameters, caught in lies:
        case = schema[path]["GET"].Case(path_parameters=parameters)
        with pytest.raises(schemathesis.errors.FailureGroup) as failures:
            case.call_and_validate(base_url=live.url, headers=live.headers, checks=CHECKS, timeout=30)
        assert caught in str(failures.value), failures.value
