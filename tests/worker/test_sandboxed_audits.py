"""Audits through the worker's runner, each in its sandboxed child: hostile networks fail with a final code at
the first attempt, never leak what they tried to read, and the worker takes the next audit."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from models.audits import Claim
from tests.support.networks import TwoLayers
from tests.support.stack import mlp, save_onnx
from tests.support.worker_audits import audit_and_layers, queued_torchscript
from worker.context import build_context
from worker.engine.audit import audit_network
from worker.runner import execute_audit, run_artifact
from worker.sandbox.child import run_in_child
from worker.sandbox.policy import policy_for

SECRET = b"gradaudit-test-secret-77ab03"


class Leaky(nn.Module):
    """Reads a file from inside forward and adds its bytes to the output, as a hostile upload would."""

    def __init__(self, path: str):
        super().__init__()
        self.path, self.size = path, len(SECRET)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        leaked = torch.from_file(self.path, size=self.size, dtype=torch.uint8).float()
        return self.out(x) + leaked[:3]


@pytest.fixture
def context(make_settings, database_url):
    """A worker context with short limits, on a migrated database of each kind."""
    settings = make_settings(database_url=database_url, soft_time_limit_s=3, hard_time_limit_s=6,
                             audit_memory_mb=512)
    return build_context(settings)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A world-readable file outside the sandbox."""
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET)
    path.chmod(0o644)
    return path


def _queued(context, network: nn.Module) -> str:
    return queued_torchscript(context, network, AuditOptions(input_shapes={"x": [2, 4]}))


def test_a_network_that_reads_a_file_gets_nothing_back(context, secret):
    audit_id = _queued(context, Leaky(str(secret)))

    execute_audit(audit_id, context=context, run_engine=audit_network)

    audit, layers = audit_and_layers(context, audit_id)
    assert audit.status == "failed" and layers == []
    # Refused by the operator screen where it is in place, else by the sandbox when forward runs.
    assert audit.error_code in ("unsafe_operator", "forward_failed")
    stored = repr([audit.error_code, audit.error_detail, audit.setup, audit.findings])
    assert SECRET.decode() not in stored and repr(list(SECRET[:3])) not in stored


def test_torch_in_the_child_cannot_read_a_planted_file(context, secret, tmp_path):
    policy = policy_for(context.settings, tmp_path / "scratch", [], drop_user=True)

    def work(_reads):
        try:
            return {"read": torch.from_file(str(secret), size=len(SECRET), dtype=torch.uint8).tolist()}
        except RuntimeError as refused:
            return {"refused": "Permission denied" in str(refused)}

    answer = run_in_child(work, policy)

    assert answer.get("refused") is True and "read" not in answer


def test_a_time_bomb_fails_at_the_first_attempt_and_the_worker_takes_the_next_audit(context):
    bomb, healthy = _queued(context, TwoLayers()), _queued(context, TwoLayers())

    def loop_forever(*_args, **_kwargs):
        while True:
            pass

    started = time.monotonic()
    execute_audit(bomb, context=context, run_engine=loop_forever)
    took = time.monotonic() - started

    audit, _ = audit_and_layers(context, bomb)
    assert (audit.status, audit.error_code, audit.attempts) == ("failed", "time_limit_exceeded", 1)
    assert took < 10
    # Redelivered (as Celery would after a lost worker), it is not run again.
    assert execute_audit(bomb, context=context, run_engine=audit_network) is Claim.FINISHED
    execute_audit(healthy, context=context, run_engine=audit_network)
    audit, _ = audit_and_layers(context, healthy)
    assert audit.status == "succeeded"
    assert (audit.setup["time_limit_s"], audit.setup["memory_limit_mb"]) == (3, 512)
    assert "child process" in audit.setup["sandbox"]


def test_a_memory_bomb_is_resource_limit_exceeded(context):
    audit_id = _queued(context, TwoLayers())

    def allocate_past_the_limit(*_args, **_kwargs):
        return torch.ones(1 << 30)  # 4 GB of float32, past the 512 MB limit

    execute_audit(audit_id, context=context, run_engine=allocate_past_the_limit)

    audit, _ = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code, audit.attempts) == ("failed", "resource_limit_exceeded", 1)
    assert "512 MB" in audit.error_detail or "GRADAUDIT_AUDIT_MEMORY_MB" in audit.error_detail


@pytest.mark.parametrize("network_format", ["onnx", "onnx_archive", "pt2"])
def test_every_format_audits_in_the_sandbox(context, tmp_path, network_format):
    network = mlp(depth=2, activation=nn.ReLU)
    if network_format == "onnx":
        path = save_onnx(network, tmp_path / "network.onnx")
    elif network_format == "onnx_archive":  # extracted inside the sandbox; zip names need the cp437 codec
        path = tmp_path / "network.zip"
        with zipfile.ZipFile(path, "w") as bundle:
            bundle.write(save_onnx(network, tmp_path / "network.onnx"), "network.onnx")
    else:
        path = tmp_path / "network.pt2"
        torch.export.save(torch.export.export(network, (torch.randn(2, 32),)), path)

    outcome = run_artifact(path, network_format, options=AuditOptions(), inputs_path=None,
                           settings=context.settings, work_dir=tmp_path / "work", run_engine=audit_network)

    assert not isinstance(outcome, AuditError), outcome
    assert outcome.layers and "child process" in outcome.setup["sandbox"]
    assert not (tmp_path / "work").exists()
