"""The worker's shell around the engine: claim, run with no session open, store or fail with a code."""

from __future__ import annotations

import dataclasses

import pytest

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from models import audits as audit_rows
from models.audits import Claim
from tests.support.networks import TwoLayers
from tests.support.worker_audits import audit_and_layers, queued_torchscript
from worker import runner
from worker.context import build_context
from worker.engine.audit import audit_network
from worker.runner import execute_audit


@pytest.fixture
def context(make_settings, database_url):
    """A worker context on a migrated database of each kind."""
    return build_context(make_settings(database_url=database_url))


def _queued_audit(context, options: dict) -> str:
    return queued_torchscript(context, TwoLayers(), AuditOptions(**options))


def test_a_claimed_audit_stores_its_report_and_layer_rows(context):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})

    assert execute_audit(audit_id, context=context, run_engine=audit_network) is Claim.CLAIMED

    audit, layers = audit_and_layers(context, audit_id)
    assert (audit.status, audit.attempts, audit.verdict) == ("succeeded", 1, "healthy")
    assert [layer["name"] for layer in layers] == ["hidden", "out"]
    assert audit.network_parameters == 4 * 8 + 8 + 8 * 3 + 3
    assert audit.setup["input_shapes"] == {"x": [2, 4]}


def test_a_redelivered_task_for_a_finished_audit_changes_nothing(context):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})
    execute_audit(audit_id, context=context, run_engine=audit_network)
    before, layers_before = audit_and_layers(context, audit_id)

    assert execute_audit(audit_id, context=context, run_engine=audit_network) is Claim.FINISHED

    after, layers_after = audit_and_layers(context, audit_id)
    assert (after.finished_at, after.attempts) == (before.finished_at, before.attempts)
    assert layers_after == layers_before


def test_an_engine_refusal_fails_the_audit_with_its_code(context):
    audit_id = _queued_audit(context, {})  # TorchScript declares no input shapes

    execute_audit(audit_id, context=context, run_engine=audit_network)

    audit, layers = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code) == ("failed", "input_shape_required")
    assert "'x'" in audit.error_detail and layers == []


def test_an_engine_crash_is_a_coded_failure_without_internals(context):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})

    def crashing_engine(*_args, **_kwargs):
        raise RuntimeError("secret internal state /etc/passwd")

    execute_audit(audit_id, context=context, run_engine=crashing_engine)

    audit, _ = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code) == ("failed", "internal_error")
    assert "secret" not in audit.error_detail


# Allocation failures from user-controlled shapes used to be stored as internal_error; each way the engine can
# meet one is the network's resource_limit_exceeded, final at the first attempt.
ALLOCATION_FAILURES = {
    "python": MemoryError(),
    "torch": RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                          "you tried to allocate 8000000000000 bytes"),
    "coded_by_the_engine": AuditError("forward_failed", "the forward pass failed: std::bad_alloc"),
}


@pytest.mark.parametrize("failure", ALLOCATION_FAILURES.values(), ids=ALLOCATION_FAILURES.keys())
def test_an_allocation_the_engine_could_not_make_is_resource_limit_exceeded(context, failure):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})

    def allocating_engine(*_args, **_kwargs):
        raise failure

    execute_audit(audit_id, context=context, run_engine=allocating_engine)

    audit, _ = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code, audit.attempts) == ("failed", "resource_limit_exceeded", 1)
    assert "GRADAUDIT_AUDIT_MEMORY_MB" in audit.error_detail


def test_a_vanished_artifact_is_a_coded_failure(context):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})
    audit, _ = audit_and_layers(context, audit_id)
    context.store.path_for(audit.artifact_sha256).unlink()

    execute_audit(audit_id, context=context, run_engine=audit_network)

    audit, _ = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code) == ("failed", "artifact_missing")


def test_a_result_is_dropped_when_another_worker_took_the_audit_over(context, monkeypatch):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})

    real_run_in_child = runner.run_in_child

    def child_that_loses_its_claim(work, policy, **kwargs):
        # The engine's sandboxed child cannot reach the database: the takeover happens beside it, meanwhile.
        with context.sessions() as db_session:  # as if this worker was presumed dead meanwhile
            audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code="worker_lost", detail="gone")
        return real_run_in_child(work, policy, **kwargs)

    monkeypatch.setattr(runner, "run_in_child", child_that_loses_its_claim)
    execute_audit(audit_id, context=context, run_engine=audit_network)

    audit, layers = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code, layers) == ("failed", "worker_lost", [])


def test_the_engine_error_type_carries_code_and_detail():
    error = AuditError("invalid_onnx", "graph has no nodes")
    assert (error.code, error.detail) == ("invalid_onnx", "graph has no nodes")


def test_a_result_the_database_refuses_fails_the_audit_instead_of_retrying_it(context):
    audit_id = _queued_audit(context, {"input_shapes": {"x": [2, 4]}})

    def engine_with_an_unstorable_layer(*args, **kwargs):
        result = audit_network(*args, **kwargs)
        broken = dataclasses.replace(result.layers[0], name=None)  # NOT NULL column
        return dataclasses.replace(result, layers=[broken])

    execute_audit(audit_id, context=context, run_engine=engine_with_an_unstorable_layer)

    audit, layers = audit_and_layers(context, audit_id)
    assert (audit.status, audit.error_code, layers) == ("failed", "internal_error", [])
