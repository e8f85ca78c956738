"""GET /v1/audits/<id>/remedies/<code>/network: the patched network a verified recommendation (or the combined
patch) kept in the artifact store, streamed as a download under the report's own rules of access."""

from __future__ import annotations

import io

import pytest

from api import create_app
from api.downloads import download_name
from models import audits as audit_rows
from tests.support.api_rows import SHA256, bearer, claim, store_result
from tests.support.problems import assert_problem

NETWORK = {"format": "torchscript", "parameters": 23, "layers": 2}
REMEDIES_SETUP = {"verified": True, "verified_recommendations": 5, "max_verified_recommendations": 12,
                  "route": "the torchscript network exported to ONNX", "training": None}
NOT_APPLICABLE = "the layers before '/0/Gemm' are not all Gemm or MatMul"
# The bytes of each patched network; every one is a separate artifact in the store.
PATCHED = {"use_relu": b"patched: use_relu", "use_relu_saturation": b"patched: use_relu for saturation",
           "combined": b"patched: combined"}


@pytest.fixture
def app(make_settings, sqlite_url):
    """An app with API keys on."""
    return create_app(make_settings(database_url=sqlite_url, auth=True))


def kept(services, content: bytes) -> dict:
    """Save bytes in the artifact store as the worker does; the report's `network` naming them."""
    artifact = services.store.save(io.BytesIO(content), max_bytes=len(content) + 1)
    return {"sha256": artifact.sha256, "size": artifact.size, "format": "onnx"}


def verified(status: str = "resolved", **extra) -> dict:
    """A recommendation's verification as worker/remedies writes it."""
    return {"status": status, "metric": "fitted_change_decades", "before": -8.67, "after": -0.88,
            "findings_after": [], "training": None, "seconds": 0.9, **extra}


def verified_findings(services) -> tuple[list[dict], dict]:
    """Two findings whose fixes were verified (one not applicable, one verified by training), and the combined
    patch; every patched network kept in the store."""
    networks = {name: kept(services, content) for name, content in PATCHED.items()}
    vanishing = {"code": "vanishing_gradient", "severity": "critical", "title": "Gradients vanish", "layers": ["0"],
                 "evidence": {}, "confidence": 0.9, "recommendations": [
                     {"code": "use_relu", "text": "use ReLU", "layers": ["0"], "patch": "replaced the sigmoid",
                      "verification": verified(), "network": networks["use_relu"]},
                     {"code": "add_batch_norm", "text": "add BatchNorm", "layers": ["0"], "patch": None,
                      "verification": verified("not_applicable", after=None, reason=NOT_APPLICABLE)},
                     {"code": "clip_gradients", "text": "clip", "layers": [], "edit": {"max_norm": 1.0},
                      "patch": None, "verification": verified("improved", metric="max_update_to_weight")}]}
    saturation = {"code": "saturated_activations", "severity": "warning", "title": "Saturated", "layers": ["1"],
                  "evidence": {}, "confidence": 0.8, "recommendations": [
                      {"code": "use_relu", "text": "use ReLU", "layers": ["1"], "patch": "replaced the sigmoid",
                       "verification": verified(), "network": networks["use_relu_saturation"]}]}
    combined = {"recommendations": [{"finding": "vanishing_gradient", "code": "use_relu"}], "skipped": [],
                "patch": "replaced the sigmoid", "network": networks["combined"],
                "verification": {"status": "resolved", "verdict_before": "critical", "verdict_after": "healthy",
                                 "findings_before": ["vanishing_gradient:critical"], "findings_after": [],
                                 "training": None, "seconds": 2.1}}
    return [vanishing, saturation], combined


@pytest.fixture
def audit_of(services, keys):
    """Insert an audit of `deep.pt` owned by a key; with a result, claim it and store the result as the worker
    does. Returns its id."""

    def insert(result: dict | None = None, owner: str = "alice") -> str:
        with services.sessions() as db_session:
            audit_id = audit_rows.create_audit(db_session=db_session, artifact_sha256=SHA256,
                                               artifact_format="torchscript", artifact_size=100, filename="deep.pt",
                                               options={}, owner_key_id=keys[owner][0]).id
        if result is not None:
            store_result(services, audit_id, result)
        return audit_id

    return insert


@pytest.fixture
def remedied(services, audit_of):
    """A succeeded audit whose recommendations were verified and whose patched networks were kept."""
    findings, combined = verified_findings(services)
    return audit_of({"network": NETWORK, "setup": {"device": "cpu", "remedies": REMEDIES_SETUP},
                     "findings": findings, "verdict": "critical", "combined": combined})


def download(client, keys, audit_id: str, code: str, query: str = "", key: str = "alice"):
    """GET the patched network."""
    return client.get(f"/v1/audits/{audit_id}/remedies/{code}/network{query}", headers=bearer(keys, key))


def test_a_recommendation_s_network_is_its_stored_bytes_as_an_attachment(client, keys, remedied):
    response = download(client, keys, remedied, "use_relu")

    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    assert response.get_data() == PATCHED["use_relu"]  # the first finding's, in report order
    assert response.headers["Content-Disposition"] == "attachment; filename=deep-use_relu.onnx"
    assert int(response.headers["Content-Length"]) == len(PATCHED["use_relu"])


def test_combined_names_the_combined_patch(client, keys, remedied):
    response = download(client, keys, remedied, "combined")

    assert response.status_code == 200 and response.get_data() == PATCHED["combined"]
    assert response.headers["Content-Disposition"] == "attachment; filename=deep-combined.onnx"


def test_the_finding_query_picks_the_finding(client, keys, remedied):
    response = download(client, keys, remedied, "use_relu", "?finding=saturated_activations")
    assert response.status_code == 200 and response.get_data() == PATCHED["use_relu_saturation"]
    assert download(client, keys, remedied, "use_relu", "?finding=vanishing_gradient").get_data() == \
        PATCHED["use_relu"]


def test_the_report_names_what_the_download_serves(client, keys, remedied):
    report = client.get(f"/v1/audits/{remedied}/report", headers=bearer(keys)).get_json()
    first = report["findings"][0]["recommendations"][0]
    assert first["network"]["sha256"] == download(client, keys, remedied, "use_relu").headers["ETag"].strip('"')
    assert report["combined"]["network"]["size"] == len(PATCHED["combined"])


@pytest.mark.parametrize(("code", "query", "detail"), [
    ("no_such_fix", "", "no recommendation 'no_such_fix' in any finding of the report"),
    ("add_batch_norm", "?finding=saturated_activations",
     "no recommendation 'add_batch_norm' in finding 'saturated_activations' of the report"),
    ("use_relu", "?finding=dead_relu", "the report has no finding 'dead_relu'"),
])
def test_no_such_recommendation_is_404_remedy_not_found(client, keys, remedied, code, query, detail):
    body = assert_problem(download(client, keys, remedied, code, query), 404, "remedy_not_found")
    assert body["detail"] == detail


def test_a_recommendation_not_applicable_says_why(client, keys, remedied):
    body = assert_problem(download(client, keys, remedied, "add_batch_norm"), 404, "remedy_not_found")
    assert body["detail"] == ("recommendation 'add_batch_norm' of finding 'vanishing_gradient' has no patched "
                              f"network: {NOT_APPLICABLE}")


def test_a_fix_verified_by_training_has_no_network(client, keys, remedied):
    body = assert_problem(download(client, keys, remedied, "clip_gradients"), 404, "remedy_not_found")
    assert "changes training, not the network" in body["detail"]


def test_without_verification_each_download_says_why(client, keys, audit_of):
    findings = [{"code": "vanishing_gradient", "severity": "critical", "title": "Gradients vanish", "layers": ["0"],
                 "evidence": {}, "confidence": 0.9,
                 "recommendations": [{"code": "use_relu", "text": "use ReLU", "layers": ["0"]}]}]
    setup = {"device": "cpu", "remedies": {"verified": False, "reason": "verify_remedies is off"}}
    audit_id = audit_of({"network": NETWORK, "setup": setup, "findings": findings, "verdict": "critical",
                         "combined": None})

    fix = assert_problem(download(client, keys, audit_id, "use_relu"), 404, "remedy_not_found")
    assert fix["detail"] == ("recommendation 'use_relu' of finding 'vanishing_gradient' was not verified: "
                             "verify_remedies is off")
    combined = assert_problem(download(client, keys, audit_id, "combined"), 404, "remedy_not_found")
    assert combined["detail"] == "there is no combined patch: the recommendations were not verified " \
                                 "(verify_remedies is off)"


def test_an_audit_from_before_verification_says_so(client, keys, audit_of):
    findings = [{"code": "vanishing_gradient", "severity": "warning", "title": "t", "layers": ["0"], "evidence": {},
                 "recommendations": [{"code": "residual", "text": "add skip connections"}]}]
    audit_id = audit_of({"network": NETWORK, "setup": {"device": "cpu"}, "findings": findings, "verdict": "warning"})

    body = assert_problem(download(client, keys, audit_id, "residual"), 404, "remedy_not_found")
    assert body["detail"].endswith("was not verified: the audit ran before recommendations were verified")


@pytest.mark.parametrize("code", ["use_relu", "combined"])
def test_a_queued_or_running_audit_is_409(client, services, keys, audit_of, code):
    audit_id = audit_of()
    queued = assert_problem(download(client, keys, audit_id, code), 409, "audit_not_finished")
    assert queued["audit_status"] == "queued"
    claim(services, audit_id)
    running = assert_problem(download(client, keys, audit_id, code), 409, "audit_not_finished")
    assert running["audit_status"] == "running"


def test_a_failed_audit_answers_as_its_report_does(client, services, keys, audit_of):
    audit_id = audit_of()
    with services.sessions() as db_session:
        audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code="input_shape_required", detail="x=?")

    body = assert_problem(download(client, keys, audit_id, "use_relu"), 422, "input_shape_required")
    report = assert_problem(client.get(f"/v1/audits/{audit_id}/report", headers=bearer(keys)), 422,
                            "input_shape_required")
    assert body == report


def test_another_key_gets_404_as_for_a_missing_audit(client, keys, remedied):
    for code in ("use_relu", "combined"):
        body = assert_problem(download(client, keys, remedied, code, key="bob"), 404, "audit_not_found")
        assert body["detail"] == f"there is no audit with id {remedied!r}"
        assert download(client, keys, remedied, code, key="ops").status_code == 200  # an admin sees every audit
    assert_problem(download(client, keys, "nope", "use_relu"), 404, "audit_not_found")
    assert_problem(client.get(f"/v1/audits/{remedied}/remedies/use_relu/network"), 401, "unauthorized")


def test_a_network_gone_from_the_store_is_503_storage_unavailable(client, services, keys, remedied):
    report = client.get(f"/v1/audits/{remedied}/report", headers=bearer(keys)).get_json()
    services.store.path_for(report["combined"]["network"]["sha256"]).unlink()

    body = assert_problem(download(client, keys, remedied, "combined"), 503, "storage_unavailable")
    assert "not in the artifact store" in body["detail"]
    assert download(client, keys, remedied, "use_relu").status_code == 200  # the others are still there


@pytest.mark.parametrize(("filename", "name"), [
    ("deep.pt", "deep-use_relu.onnx"),
    ("resnet50.v2.onnx", "resnet50.v2-use_relu.onnx"),
    ("net.tar.gz", "net-use_relu.onnx"),
    ("C:\\models\\my net.onnx", "my_net-use_relu.onnx"),
    ('../../etc/"quoted"\r\nname.pt2', "quoted_name-use_relu.onnx"),
    ("réseau.onnx", "r_seau-use_relu.onnx"),
    (".onnx", "onnx-use_relu.onnx"),
    (None, "network-use_relu.onnx"),
])
def test_the_download_is_named_after_the_upload(filename, name):
    assert download_name(filename, "use_relu") == name
