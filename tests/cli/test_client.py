"""cli.client against a real app served over HTTP on a local port."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from api import create_app
from cli.client import Client, ServiceError
from models import audits as audit_rows


@pytest.fixture
def served(make_settings, sqlite_url):
    """The app on an ephemeral port; yields (base URL, app)."""
    app = create_app(make_settings(database_url=sqlite_url))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", app
    server.shutdown()
    thread.join(5)


@pytest.fixture
def onnx_file(tmp_path):
    """A minimal ModelProto on disk: ir_version and an empty graph."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"\x08\x07:\x00")
    return path


def fail(app, audit_id: str, code: str, detail: str) -> None:
    """Mark the audit failed, as the worker does."""
    with app.extensions["gradaudit"].sessions() as db_session:
        audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=code, detail=detail)


def test_submit_and_poll(served, onnx_file):
    url, _ = served
    client = Client(url)
    queued = client.submit(onnx_file, options={"seed": 3})

    assert (queued["status"], queued["artifact"]["format"], queued["options"]["seed"]) == ("queued", "onnx", 3)
    assert client.audit(queued["id"])["id"] == queued["id"]


def test_an_onnx_file_with_its_data_file_is_uploaded_as_one_archive(served, onnx_file):
    (onnx_file.parent / "net.onnx.data").write_bytes(b"\0" * 64)  # what torch's exporter writes beside it
    url, _ = served
    queued = Client(url).submit(onnx_file, options={})
    assert (queued["artifact"]["format"], queued["artifact"]["filename"]) == ("onnx_archive", "net.zip")


def test_refusal_carries_the_problem_code(served, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    with pytest.raises(ServiceError) as refused:
        Client(served[0]).submit(junk, options={})
    assert refused.value.code == "unsupported_format"


def test_invalid_options_code(served, onnx_file):
    with pytest.raises(ServiceError) as refused:
        Client(served[0]).submit(onnx_file, options={"bogus": True})
    assert refused.value.code == "invalid_options"


def test_unknown_audit(served):
    with pytest.raises(ServiceError) as missing:
        Client(served[0]).audit("nope")
    assert (missing.value.code, missing.value.detail) == ("audit_not_found", "there is no audit with id 'nope'")


def test_wait_for_failed_audit_raises_its_code(served, onnx_file):
    url, app = served
    client = Client(url, poll_interval_s=0.01)
    audit_id = client.submit(onnx_file, options={})["id"]
    fail(app, audit_id, "input_shape_required", "give --input-shape")
    seen = []

    with pytest.raises(ServiceError) as failed:
        client.wait_for_report(audit_id, timeout_s=5, progress=lambda status, _: seen.append(status))
    assert (failed.value.code, failed.value.detail) == ("input_shape_required", "give --input-shape")
    assert seen == ["failed"]


def test_wait_times_out(served, onnx_file):
    url, _ = served
    client = Client(url, poll_interval_s=0.01)
    audit_id = client.submit(onnx_file, options={})["id"]

    with pytest.raises(ServiceError) as waited:
        client.wait_for_report(audit_id, timeout_s=0.05)
    assert waited.value.code == "wait_timeout"


def test_unreachable_service():
    with pytest.raises(ServiceError) as unreachable:
        Client("http://127.0.0.1:1", timeout_s=2).audit("x")
    assert unreachable.value.code == "service_unreachable"
