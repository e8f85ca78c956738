"""The patched networks a sandboxed audit writes reach the artifact store and the report (worker/runner.py): the
parent keeps only plain files inside the child's scratch folder, and names each in its recommendation."""

from __future__ import annotations

import os
from functools import partial

import onnx
import pytest

from gradaudit.options import AuditOptions
from models import audits as audit_rows
from tests.support.networks import deep_sigmoid
from tests.support.worker_audits import queued_torchscript
from worker.context import build_context
from worker.remedies.audit import audit_with_remedies
from worker.runner import execute_audit, written_fixes


@pytest.fixture
def context(make_settings, sqlite_url):
    return build_context(make_settings(database_url=sqlite_url))


def _queued_sigmoid_stack(context) -> str:
    options = AuditOptions(input_shapes={"input": [8, 16]}, verify_steps=0)
    return queued_torchscript(context, deep_sigmoid(8, 16), options)


def test_each_verified_fix_is_kept_in_the_store_and_named_in_the_report(context):
    audit_id = _queued_sigmoid_stack(context)

    execute_audit(audit_id, context=context, run_engine=partial(audit_with_remedies, max_verified=12))

    with context.sessions() as db_session:
        audit = audit_rows.get_audit(db_session=db_session, audit_id=audit_id)
    assert audit.status == "succeeded", audit.error_detail
    kept = [r for f in audit.findings for r in f["recommendations"] if "network" in r]
    assert kept and all(context.store.path_for(r["network"]["sha256"]).is_file() for r in kept)
    assert all(r["network"]["format"] == "onnx" for r in kept)
    assert audit.combined["verification"]["status"] == "resolved"
    onnx.checker.check_model(onnx.load(context.store.path_for(audit.combined["network"]["sha256"])))
    assert not context.settings.work_dir_for(audit_id).exists()  # the scratch folder went after


def test_only_plain_files_inside_the_scratch_folder_are_kept(tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "fixes").mkdir(parents=True)
    (scratch / "fixes" / "good.onnx").write_bytes(b"onnx")
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    os.symlink(outside, scratch / "fixes" / "link.onnx")
    fixes = {"a/good": "fixes/good.onnx", "a/link": "fixes/link.onnx", "a/out": "../secret",
             "a/none": "fixes/missing.onnx", "a/dir": "fixes"}
    assert written_fixes(fixes, scratch) == {"a/good": scratch / "fixes" / "good.onnx"}
