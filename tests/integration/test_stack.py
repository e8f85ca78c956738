"""POST, poll, report through a real Redis and a real worker process, including killed workers."""

from __future__ import annotations

import os
import signal
import time

import pytest
from torch import nn

from tests.support.stack import SLOW_OPTIONS, Stack, mlp, save_onnx, save_torchscript

pytestmark = pytest.mark.integration

REPORT_KEYS = {"id", "status", "report_version", "network", "setup", "layers", "findings", "verdict"}


@pytest.mark.parametrize("save", [save_torchscript, save_onnx], ids=["torchscript", "onnx"])
def test_audit_goes_from_upload_to_report(stack, tmp_path, save):
    path = save(mlp(depth=2, activation=nn.ReLU), tmp_path / "mlp.bin")
    stack.start_worker()

    audit_id = stack.submit(path, options='{"input_shapes": {"x": [4, 32]}}')
    audit = stack.wait_for(audit_id, ("succeeded", "failed"))

    assert audit["status"] == "succeeded", audit.get("error")
    assert audit["attempts"] == 1
    report = stack.client.get(f"/v1/audits/{audit_id}/report").json
    assert REPORT_KEYS <= set(report)
    weight_layers = [layer for layer in report["layers"] if layer["parameters"] > 0]
    assert report["network"]["layers"] == len(report["layers"])
    assert len(weight_layers) == 3
    assert report["network"]["parameters"] == 32 * 32 * 2 + 32 * 2 + 32 * 10 + 10
    assert all(layer["grad_norm"] > 0 for layer in weight_layers)
    assert all(layer["output_grad"] is not None for layer in report["layers"])
    layers = stack.client.get(f"/v1/audits/{audit_id}/layers").json["layers"]
    assert layers == report["layers"]


def test_deep_sigmoid_stack_is_reported_as_vanishing(stack, tmp_path):
    path = save_torchscript(mlp(depth=12, activation=nn.Sigmoid), tmp_path / "deep.pt")
    stack.start_worker()

    audit_id = stack.submit(path, options='{"input_shapes": {"x": [8, 32]}}')
    stack.wait_for(audit_id, ("succeeded", "failed"))

    report = stack.client.get(f"/v1/audits/{audit_id}/report").json
    assert report["verdict"] in ("warning", "critical")
    assert "vanishing_gradient" in [finding["code"] for finding in report["findings"]]


def test_bad_network_fails_with_its_code_and_the_worker_carries_on(stack, tmp_path):
    torchscript = save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "no-shape.pt")
    stack.start_worker()

    failed_id = stack.submit(torchscript)  # TorchScript declares no shapes and none were given
    failed = stack.wait_for(failed_id, ("succeeded", "failed"))
    good_id = stack.submit(torchscript, options='{"input_shapes": {"x": [2, 32]}}')
    good = stack.wait_for(good_id, ("succeeded", "failed"))

    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "input_shape_required"
    problem = stack.client.get(f"/v1/audits/{failed_id}/report")
    assert problem.status_code == 422 and problem.json["code"] == "input_shape_required"
    assert good["status"] == "succeeded"


def test_audit_survives_sigkill_of_its_worker(stack, slow_network):
    first = stack.start_worker()
    audit_id = stack.submit(slow_network, options=SLOW_OPTIONS)
    stack.wait_for(audit_id, ("running",))

    first.kill()
    stack.start_worker()
    audit = stack.wait_for(audit_id, ("succeeded", "failed"), timeout_s=180)

    assert audit["status"] == "succeeded", audit.get("error")
    assert audit["attempts"] == 2


def test_audit_whose_worker_always_dies_fails_as_worker_lost(make_settings, sqlite_url, redis_url, tmp_path,
                                                             slow_network):
    settings = make_settings(database_url=sqlite_url, broker_url=redis_url, heartbeat_s=0.5, stale_after_s=3,
                             max_attempts=2)
    stack = Stack(settings, tmp_path)
    try:
        stack.start_worker()
        audit_id = stack.submit(slow_network, options=SLOW_OPTIONS)
        for _ in range(settings.max_attempts):
            _kill_process_running(stack, audit_id)
        audit = stack.wait_for(audit_id, ("succeeded", "failed"), timeout_s=120)
        assert audit["status"] == "failed"
        assert audit["error"]["code"] == "worker_lost"
        assert audit["attempts"] == settings.max_attempts

        # The queue is not blocked: the same worker audits the next network.
        tiny = save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "tiny.pt")
        next_id = stack.submit(tiny, options='{"input_shapes": {"x": [2, 32]}}')
        assert stack.wait_for(next_id, ("succeeded", "failed"), timeout_s=120)["status"] == "succeeded"
    finally:
        stack.close()


def _kill_process_running(stack, audit_id: str, timeout_s: float = 120) -> None:
    """SIGKILL the pool process that claimed the audit, the way the kernel's OOM killer would."""
    deadline = time.monotonic() + timeout_s
    previous_attempts = stack.audit(audit_id)["attempts"]
    while True:
        audit = stack.audit(audit_id)
        if audit["status"] == "running" and audit["attempts"] > previous_attempts:
            break
        assert time.monotonic() < deadline, f"audit never started again: {audit}, {stack.logs()}"
        time.sleep(0.1)
    os.kill(_owner_pid(stack, audit_id), signal.SIGKILL)


def _owner_pid(stack, audit_id: str) -> int:
    from models.audits import get_audit
    from models.database import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(stack.settings.sqlalchemy_url))
    with sessions() as db_session:
        return int(get_audit(db_session=db_session, audit_id=audit_id).claimed_by.rpartition(":")[2])


def test_an_archive_with_external_weights_audits_through_the_stack(stack, tmp_path):
    import zipfile

    import onnx

    plain = save_onnx(mlp(depth=2, activation=nn.ReLU), tmp_path / "plain.onnx")
    onnx.save_model(onnx.load(str(plain)), str(tmp_path / "net.onnx"), save_as_external_data=True,
                    location="net.onnx.data", size_threshold=0)
    archive = tmp_path / "net.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(tmp_path / "net.onnx", "net.onnx")
        bundle.write(tmp_path / "net.onnx.data", "net.onnx.data")
    stack.start_worker()

    audit_id = stack.submit(archive)
    audit = stack.wait_for(audit_id, ("succeeded", "failed"))

    assert audit["status"] == "succeeded", (audit.get("error"), stack.logs())
    assert stack.client.get(f"/v1/audits/{audit_id}/report").json["network"]["format"] == "onnx"
    assert not stack.settings.work_dir_for(audit_id).exists()  # the extraction folder is cleaned up
