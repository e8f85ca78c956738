"""The worker stores where a running audit is as its sandboxed child reports it (worker/progress.py through
worker/sandbox/progress.py), and the report's setup says how long each phase took."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from models import audits as audit_rows
from tests.support.networks import TwoLayers
from tests.support.worker_audits import queued_torchscript
from worker.context import build_context
from worker.engine import progress
from worker.engine.audit import audit_network
from worker.progress import ProgressWriter
from worker.runner import execute_audit


@pytest.fixture
def context(make_settings, sqlite_url):
    """A worker context on a migrated SQLite database."""
    return build_context(make_settings(database_url=sqlite_url))


def _queued_audit(context) -> str:
    return queued_torchscript(context, TwoLayers(), AuditOptions(input_shapes={"x": [2, 4]}))


def _row(context, audit_id: str):
    with context.sessions() as db_session:
        return audit_rows.get_audit(db_session=db_session, audit_id=audit_id)


def test_a_succeeded_audit_reads_1_and_its_setup_has_the_seconds_of_each_phase(context):
    audit_id = _queued_audit(context)

    execute_audit(audit_id, context=context, run_engine=audit_network)

    audit = _row(context, audit_id)
    assert (audit.status, audit.phase, audit.progress) == ("succeeded", "diagnosing", 1.0)
    assert list(audit.setup["phase_seconds"]) == ["loading", "probing", "diagnosing"]
    assert all(0 <= seconds < 60 for seconds in audit.setup["phase_seconds"].values())


def test_a_failed_audit_keeps_how_far_it_got(context):
    audit_id = _queued_audit(context)

    def fails_while_probing(*_args, **_kwargs):
        progress.report("loading")
        progress.report("probing", 0.5)
        raise AuditError("forward_failed", "no")

    execute_audit(audit_id, context=context, run_engine=fails_while_probing)

    audit = _row(context, audit_id)
    assert (audit.status, audit.error_code, audit.phase, audit.progress) == ("failed", "forward_failed", "probing", 0.3)


def test_progress_is_stored_while_the_audit_runs(context):
    audit_id = _queued_audit(context)

    def slow_engine(*args, **kwargs):
        progress.report("probing", 0.5)
        time.sleep(2.0)
        return audit_network(*args, **kwargs)

    seen = []

    def watch():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            audit = _row(context, audit_id)
            seen.append((audit.status, audit.phase, audit.progress))
            if audit.status in ("succeeded", "failed"):
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    execute_audit(audit_id, context=context, run_engine=slow_engine)
    watcher.join()

    assert ("running", "probing", 0.3) in seen
    assert seen[-1] == ("succeeded", "diagnosing", 1.0)
    running = [value for status, _, value in seen if status == "running" and value is not None]
    assert running == sorted(running)


def test_the_writer_writes_the_latest_value_at_most_every_interval_and_the_last_before_it_stops(context):
    audit_id = _queued_audit(context)
    written = []

    class Recording(ProgressWriter):
        def _write(self, phase, value):
            written.append((phase, value, time.monotonic()))

    with Recording(context, audit_id, "w1", interval_s=0.3) as writer:
        for step in range(1, 11):
            writer.offer("probing", 0.15 + step * 0.01)
            time.sleep(0.05)
        writer.offer("diagnosing", 0.45)

    assert written[-1][:2] == ("diagnosing", 0.45)
    assert len(written) <= 4  # ten offers over half a second, written at most every 0.3 s, and the last
    gaps = [later[2] - earlier[2] for earlier, later in itertools.pairwise(written[:-1])]
    assert all(gap >= 0.29 for gap in gaps)

