"""POST /v1/audits: accepted uploads, and every way an upload is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from api import create_app
from gradaudit.options import AuditOptions
from models import audits as audit_rows
from tests.support.problems import assert_problem, audit_count, stored_files


@pytest.mark.parametrize("network", ["torchscript", "onnx"])
def test_submit_queues_audit_and_stores_artifact(network, request, submit, services, sent_messages):
    content = request.getfixturevalue(f"{network}_bytes")
    response = submit(content, filename=f"net.{network}")

    assert response.status_code == 202
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/audits/{body['id']}"
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["started_at"] is None and body["finished_at"] is None and body["verdict"] is None
    assert "error" not in body
    sha256 = hashlib.sha256(content).hexdigest()
    assert body["artifact"] == {"format": network, "sha256": sha256, "size": len(content),
                                "filename": f"net.{network}"}
    assert body["options"] == AuditOptions().model_dump()
    stored = services.store.path_for(sha256)
    assert stored == services.settings.artifacts_path / sha256[:2] / sha256
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256
    assert sent_messages() == [("gradaudit.run_audit", [body["id"]])]


def test_submit_records_row_with_enqueued_time(submit, services, torchscript_bytes):
    options = {"input_shapes": {"x": [1, 4]}, "batch_size": 2, "seed": 7, "loss": "mse"}
    body = submit(torchscript_bytes, options=json.dumps(options)).get_json()

    with services.sessions() as db_session:
        row = audit_rows.get_audit(db_session=db_session, audit_id=body["id"])
    assert row.status == "queued"
    assert row.enqueued_at is not None
    assert row.options == body["options"] == AuditOptions(**options).model_dump()
    assert row.inputs_sha256 is None


def test_identical_uploads_share_one_stored_file(submit, services, sent_messages, torchscript_bytes):
    first = submit(torchscript_bytes).get_json()
    second = submit(torchscript_bytes).get_json()

    assert first["id"] != second["id"]
    assert first["artifact"]["sha256"] == second["artifact"]["sha256"]
    assert len(stored_files(services.store.root)) == 1
    assert [args for _, args in sent_messages()] == [[first["id"]], [second["id"]]]


def test_submit_stores_npz_inputs(submit, services, torchscript_bytes, npz_bytes):
    inputs = (io.BytesIO(npz_bytes), "batch.npz")
    body = submit(torchscript_bytes, inputs=inputs).get_json()

    with services.sessions() as db_session:
        row = audit_rows.get_audit(db_session=db_session, audit_id=body["id"])
    assert row.inputs_sha256 == hashlib.sha256(npz_bytes).hexdigest()
    assert services.store.path_for(row.inputs_sha256).read_bytes() == npz_bytes


def test_options_may_come_as_a_file_part(submit, torchscript_bytes):
    options = (io.BytesIO(b'{"batch_size": 3}'), "options.json")
    assert submit(torchscript_bytes, options=options).get_json()["options"]["batch_size"] == 3


def test_missing_model_field(client, services, sent_messages):
    response = client.post("/v1/audits", data={"options": "{}"}, content_type="multipart/form-data")
    assert_problem(response, 400, "missing_model")
    assert audit_count(services) == 0 and sent_messages() == []


def test_non_multipart_body_is_missing_model(client):
    assert_problem(client.post("/v1/audits", json={"model": "x"}), 400, "missing_model")


def test_empty_upload(submit, services, sent_messages):
    body = assert_problem(submit(b""), 400, "empty_upload")
    assert body["detail"] == "the 'model' field holds no bytes"
    assert audit_count(services) == 0 and sent_messages() == []
    assert stored_files(services.store.root) == []


def test_garbage_is_unsupported_format(submit, services, sent_messages):
    body = assert_problem(submit(os.urandom(4096) + b"\x00"), 415, "unsupported_format")
    assert body["accepted"] == ["onnx", "torchscript", "pt2"]
    assert audit_count(services) == 0 and sent_messages() == []
    assert stored_files(services.store.root) == []


def test_text_file_is_unsupported_format(submit):
    assert_problem(submit(b"hello, this is not a network\n"), 415, "unsupported_format")


class Trap:
    """Unpickling this creates a folder: proof that something unpickled the upload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("zip_container", [True, False], ids=["zip", "legacy"])
def test_pickled_checkpoint_is_refused_unopened(zip_container, submit, services, sent_messages, tmp_path):
    import torch

    marker = tmp_path / "unpickled"
    buffer = io.BytesIO()
    state = {"weight": torch.ones(2, 2), "trap": Trap(marker)}
    torch.save(state, buffer, _use_new_zipfile_serialization=zip_container)

    body = assert_problem(submit(buffer.getvalue()), 415, "unsupported_format")
    assert "pickle" in body["detail"]
    assert not marker.exists()
    assert stored_files(services.store.root) == []
    assert audit_count(services) == 0 and sent_messages() == []


@pytest.mark.parametrize("fixture", ["state_dict_bytes", "legacy_pickle_bytes"])
def test_plain_state_dicts_are_refused(fixture, request, submit):
    body = assert_problem(submit(request.getfixturevalue(fixture)), 415, "unsupported_format")
    assert "torch.jit.save" in body["detail"]


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ("{not json", "", "Invalid JSON"),
        ('{"bogus": 1}', "bogus", "Extra inputs are not permitted"),
        ('{"input_shapes": {"x": [1, 0]}}', "input_shapes", "positive integers"),
        ('{"input_shapes": {"x": []}}', "input_shapes", "positive integers"),
        ('{"batch_size": 0}', "batch_size", "greater than or equal to 1"),
        ('{"loss": "hinge"}', "loss", "Input should be"),
    ],
    ids=["not-json", "unknown-key", "zero-dim", "no-dims", "batch-size", "loss"],
)
def test_invalid_options(raw, field, message, submit, services, sent_messages, torchscript_bytes):
    body = assert_problem(submit(torchscript_bytes, options=raw), 400, "invalid_options")
    assert any(error["field"] == field and message in error["message"] for error in body["errors"]), body
    assert audit_count(services) == 0 and sent_messages() == []
    assert stored_files(services.store.root) == []


def test_inputs_that_are_not_npz(submit, services, sent_messages, torchscript_bytes):
    inputs = (io.BytesIO(b"x = [1, 2, 3]"), "inputs.npz")
    body = assert_problem(submit(torchscript_bytes, inputs=inputs), 400, "invalid_inputs")
    assert ".npz" in body["detail"]
    assert audit_count(services) == 0 and sent_messages() == []
    assert stored_files(services.store.root) == []


def test_request_over_the_upload_limit(make_settings, sqlite_url):
    client = create_app(make_settings(database_url=sqlite_url, max_upload_mb=1)).test_client()
    form = {"model": (io.BytesIO(b"\x08\x07" + os.urandom(3 * 1024 * 1024)), "big.onnx")}
    response = client.post("/v1/audits", data=form, content_type="multipart/form-data")

    assert_problem(response, 413, "upload_too_large")


def zip_with_torchscript_layout(padding: int) -> bytes:
    """A zip that sniffs as TorchScript, padded to a chosen size with incompressible bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("net/code/__torch__.py", "")
        archive.writestr("net/data.pkl", b"")
        archive.writestr("net/padding", os.urandom(padding))
    return buffer.getvalue()


def test_file_over_the_limit_inside_the_request_limit(make_settings, sqlite_url):
    # The request limit leaves room for multipart framing; the store still holds the file to the limit.
    app = create_app(make_settings(database_url=sqlite_url, max_upload_mb=1))
    form = {"model": (io.BytesIO(zip_with_torchscript_layout(1536 * 1024)), "big.pt")}
    response = app.test_client().post("/v1/audits", data=form, content_type="multipart/form-data")

    body = assert_problem(response, 413, "upload_too_large")
    assert body["detail"] == "the limit is 1 MB (GRADAUDIT_MAX_UPLOAD_MB)"
    services = app.extensions["gradaudit"]
    assert stored_files(services.store.root) == []
    assert audit_count(services) == 0


def test_truncated_onnx_is_unsupported_format(submit, services, onnx_bytes):
    assert_problem(submit(onnx_bytes[: len(onnx_bytes) // 2], filename="cut.onnx"), 415, "unsupported_format")
    assert stored_files(services.store.root) == []
