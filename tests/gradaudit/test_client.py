"""gradaudit.client against a real app served over HTTP on a local port (the worker's part played by writing the
audit's row as it does); tests/integration/test_client_stack.py runs it against a whole live service."""

from __future__ import annotations

import threading
import time

import pytest

from api import create_app
from gradaudit.client import Audit, Client, ServiceError, service_url
from models import audits as audit_rows
from tests.support.api_rows import store_result
from tests.support.reports import NETWORK, SETUP, finding, layer
from tests.support.threaded_app import serving

LAYERS = [layer("/0/Gemm", 0, grad_norm=1e-4, output_grad_norm=7e-5), layer("/1/Gemm", 1, grad_norm=1e-2)]


@pytest.fixture
def served(make_settings, sqlite_url):
    """The app on an ephemeral port; yields (base URL, app)."""
    app = create_app(make_settings(database_url=sqlite_url))
    with serving(app) as url:
        yield f"{url}/", app


@pytest.fixture
def onnx_file(tmp_path):
    """A minimal ModelProto on disk: ir_version and an empty graph (the API only sniffs it)."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"\x08\x07:\x00")
    return path


def fail(app, audit_id: str, code: str, detail: str) -> None:
    """Mark the audit failed, as the worker does."""
    with app.extensions["gradaudit"].sessions() as db_session:
        audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=code, detail=detail)


def succeed(app, audit_id: str, findings=()) -> None:
    """Store a result for the audit, as the worker does."""
    store_result(app.extensions["gradaudit"], audit_id, {"network": NETWORK, "setup": SETUP, "findings": list(findings),
                                                         "verdict": "critical" if findings else "healthy"}, LAYERS)


def test_submit_get_and_list(served, onnx_file):
    url, _ = served
    client = Client(url)
    queued = client.submit(onnx_file, {"seed": 3})
    other = client.audit(onnx_file, wait=False)

    assert (queued["status"], queued["artifact"]["format"], queued["options"]["seed"]) == ("queued", "onnx", 3)
    assert (queued["phase"], queued["progress"]) == (None, None)
    assert client.get(queued["id"])["id"] == queued["id"] and other["status"] == "queued"
    page = client.list(limit=1)
    assert (page["total"], [item["id"] for item in page["items"]], page["next"] is not None) == (2, [other["id"]], True)
    assert [item["id"] for item in client.list(limit=1, offset=1)["items"]] == [queued["id"]]


def test_audit_uploads_waits_and_returns_the_typed_report(served, onnx_file):
    url, app = served
    client = Client(url, poll_interval_s=0.05)
    upload = Client.submit

    def submit_then_finish(self, *arguments):
        queued = upload(self, *arguments)
        threading.Timer(0.3, succeed, (app, queued["id"], [finding("vanishing_gradient", "critical")])).start()
        return queued

    polls: list[Audit] = []
    client.submit = submit_then_finish.__get__(client)
    report = client.audit(onnx_file, {"input_shapes": {"x": [8, 32]}}, timeout=10, on_poll=polls.append)

    assert report["verdict"] == "critical" and [f["code"] for f in report["findings"]] == ["vanishing_gradient"]
    assert [layer["name"] for layer in report["layers"]] == ["/0/Gemm", "/1/Gemm"]
    assert polls[0]["status"] in ("queued", "running") and polls[-1]["status"] == "succeeded"
    assert polls[-1]["progress"] == 1.0


def test_an_onnx_file_with_its_data_file_is_uploaded_as_one_archive(served, onnx_file):
    (onnx_file.parent / "net.onnx.data").write_bytes(b"\0" * 64)  # what torch's exporter writes beside it
    queued = Client(served[0]).submit(onnx_file)
    assert (queued["artifact"]["format"], queued["artifact"]["filename"]) == ("onnx_archive", "net.zip")


def test_a_refusal_carries_the_problems_code_status_and_document(served, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    with pytest.raises(ServiceError) as refused:
        Client(served[0]).submit(junk)
    error = refused.value
    assert (error.code, error.status, error.problem["code"], error.problem["status"]) == (
        "unsupported_format", 415, "unsupported_format", 415)
    assert error.detail == error.problem["detail"]


def test_invalid_options_and_an_unknown_audit(served, onnx_file):
    client = Client(served[0])
    with pytest.raises(ServiceError) as refused:
        client.submit(onnx_file, {"bogus": True})
    with pytest.raises(ServiceError) as missing:
        client.get("nope")
    assert (refused.value.code, refused.value.status) == ("invalid_options", 400)
    assert (missing.value.code, missing.value.status, missing.value.detail) == (
        "audit_not_found", 404, "there is no audit with id 'nope'")


def test_waiting_on_a_failed_audit_returns_it_and_its_report_raises_its_code(served, onnx_file):
    url, app = served
    client = Client(url, poll_interval_s=0.01)
    audit_id = client.submit(onnx_file)["id"]
    fail(app, audit_id, "input_shape_required", "give its shape")
    polls = []

    finished = client.wait(audit_id, timeout=5, on_poll=polls.append)
    with pytest.raises(ServiceError) as failed:
        client.report(audit_id)

    assert finished["error"] == {"code": "input_shape_required", "detail": "give its shape"}
    assert [poll["status"] for poll in polls] == ["failed"]
    assert (failed.value.code, failed.value.status, failed.value.detail) == (
        "input_shape_required", 422, "give its shape")


def test_a_report_asked_for_too_early_is_audit_not_finished(served, onnx_file):
    client = Client(served[0])
    with pytest.raises(ServiceError) as early:
        client.report(client.submit(onnx_file)["id"])
    assert (early.value.code, early.value.status) == ("audit_not_finished", 409)


def test_wait_times_out_after_its_timeout(served, onnx_file):
    client = Client(served[0], poll_interval_s=0.05)
    audit_id = client.submit(onnx_file)["id"]

    started = time.monotonic()
    with pytest.raises(ServiceError) as waited:
        client.wait(audit_id, timeout=0.3)
    assert waited.value.code == "wait_timeout" and waited.value.status is None
    assert 0.3 <= time.monotonic() - started < 2
    assert waited.value.problem["code"] == "wait_timeout" and "still queued" in waited.value.problem["detail"]


def test_compare_and_the_html_report(served, onnx_file):
    url, app = served
    client = Client(url)
    base, audit = client.submit(onnx_file)["id"], client.submit(onnx_file)["id"]
    succeed(app, base)
    succeed(app, audit, [finding("vanishing_gradient", "critical")])

    comparison = client.compare(audit, base)
    page = client.report_html(audit)

    assert comparison["regression"] is True
    assert [f["code"] for f in comparison["findings"]["added"]] == ["vanishing_gradient"]
    assert page.lstrip().lower().startswith("<!doctype html") and "vanishing" in page.lower()


def test_unreachable_service():
    with pytest.raises(ServiceError) as unreachable:
        Client("http://127.0.0.1:1", timeout_s=2).get("x")
    assert (unreachable.value.code, unreachable.value.status) == ("service_unreachable", None)
    assert unreachable.value.problem["code"] == "service_unreachable"


@pytest.mark.parametrize(("given", "url"), [
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("localhost:8000", "http://localhost:8000"),
    (" https://audits.example.com/base/ ", "https://audits.example.com/base"),
    ("gradaudit.internal", "http://gradaudit.internal"),
])
def test_a_url_without_a_scheme_is_http(given, url):
    assert service_url(given) == url


@pytest.mark.parametrize("given", ["ftp://host", "http://", "", "file:///etc/passwd", "://host"])
def test_anything_else_is_refused_with_what_to_give(given):
    with pytest.raises(ValueError, match="give http://HOST:PORT or https://HOST"):
        Client(given)


def test_the_typed_audit_is_the_documents():
    from api.openapi import openapi_document

    documented = openapi_document()["components"]["schemas"]["Audit"]["properties"]
    assert set(documented) <= set(Audit.__annotations__)
