"""Nothing lost when parts of `gradaudit serve` die: kill -9 of the worker's main process, of the pool process
running an audit, of the embedded Redis and of serve itself (the API), each mid-audit with audits queued: every
audit still succeeds, none is lost or left queued or running."""

from __future__ import annotations

import signal
import time

import psutil
import pytest
from torch import nn

from tests.support.served import FINISHED, Served
from tests.support.stack import SLOW_OPTIONS, SlowRecurrence, mlp, save_torchscript

pytestmark = pytest.mark.integration

TINY_OPTIONS = '{"input_shapes": {"x": [2, 32]}}'
QUEUED_BEHIND = 3
# One audit at a time, so the tiny audits wait in the queue behind the slow one while something is killed.
ONE_SLOT = {"GRADAUDIT_WORKER_CONCURRENCY": "1"}


@pytest.fixture
def networks(tmp_path):
    """A slow network (seconds of audit, to kill something mid-way) and a tiny one."""
    return (save_torchscript(SlowRecurrence(steps=60), tmp_path / "slow.pt"),
            save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "tiny.pt"))


@pytest.fixture
def served(tmp_path):
    """`gradaudit serve` on an empty data dir, ready (a worker seen)."""
    running = Served(tmp_path, tmp_path / "data", **ONE_SLOT)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def _running_with_queue(served: Served, networks) -> list[str]:
    """A slow audit running and tiny ones queued behind it; their ids, the slow one first."""
    slow, tiny = networks
    # All posted first, then the wait: whatever kills something next does so right after the slow one starts,
    # not after a few more POSTs, which on a loaded machine could outlast the slow audit.
    ids = [served.submit(slow, SLOW_OPTIONS)] + [served.submit(tiny, TINY_OPTIONS) for _ in range(QUEUED_BEHIND)]
    served.wait_status(ids[0], ("running",))
    return ids


def _all_succeed(served: Served, ids: list[str], timeout_s: float = 150) -> list[dict]:
    audits = [served.wait_status(audit_id, FINISHED, timeout_s) for audit_id in ids]
    assert [audit["status"] for audit in audits] == ["succeeded"] * len(ids), (audits, served.log())
    return audits


def _owner_pid(data_dir, audit_id: str) -> int:
    from models.audits import get_audit
    from models.database import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(f"sqlite:///{(data_dir / 'gradaudit.db').resolve()}"))
    with sessions() as db_session:
        return int(get_audit(db_session=db_session, audit_id=audit_id).claimed_by.rpartition(":")[2])


def test_a_killed_worker_is_restarted_and_healthz_says_so_meanwhile(served, networks):
    ids = _running_with_queue(served, networks)
    worker = served.child("worker")

    worker.send_signal(signal.SIGKILL)

    served.wait_until(lambda: served.health()["worker"] is False, "healthz to report no worker", timeout_s=20)
    assert served.health()["database"] is True  # the API itself keeps answering
    restarted = served.wait_until(lambda: (child := served.child("worker")).pid != worker.pid and child,
                                  "the worker to be restarted")
    audits = _all_succeed(served, ids)
    assert audits[0]["attempts"] == 2  # the slow one ran again; the queued ones once each
    assert [audit["attempts"] for audit in audits[1:]] == [1] * QUEUED_BEHIND
    assert served.health()["worker"] is True and restarted.is_running()
    assert "worker exited with code -9; restarting" in served.log_path.read_text()


def test_a_killed_pool_process_loses_nothing(served, networks, tmp_path):
    ids = _running_with_queue(served, networks)
    worker = served.child("worker")

    psutil.Process(_owner_pid(tmp_path / "data", ids[0])).send_signal(signal.SIGKILL)

    _all_succeed(served, ids)
    assert served.child("worker").pid == worker.pid  # the worker replaced its pool process itself


def test_a_killed_audit_child_is_a_final_coded_failure_and_the_queue_moves_on(served, networks, tmp_path):
    # Slower than the others: the child must still be the slow audit's when it is found and killed (with the
    # usual slow network a loaded machine could finish that audit first and hand the kill to a tiny one's child).
    slower = save_torchscript(SlowRecurrence(steps=240), tmp_path / "slower.pt")
    ids = _running_with_queue(served, (slower, networks[1]))
    pool = psutil.Process(_owner_pid(tmp_path / "data", ids[0]))
    child = served.wait_until(lambda: next(iter(pool.children()), None), "the audit's sandboxed child")
    assert served.audit(ids[0])["status"] == "running"

    child.send_signal(signal.SIGKILL)

    # Killed from outside, the child looks like the kernel's OOM killer got it: the audit's own failure,
    # final at once (retrying would only kill the next one), never a stuck audit or a dead worker.
    slow = served.wait_status(ids[0], FINISHED)
    assert slow["status"] == "failed" and slow["attempts"] == 1
    assert slow["error"]["code"] in ("audit_crashed", "resource_limit_exceeded"), slow
    _all_succeed(served, ids[1:])
    assert served.health()["worker"] is True


def test_a_killed_redis_is_restarted_with_its_queue(served, networks):
    ids = _running_with_queue(served, networks)
    redis = served.child("redis-server")

    redis.send_signal(signal.SIGKILL)

    served.wait_until(lambda: served.child("redis-server").pid != redis.pid, "Redis to be restarted")
    _all_succeed(served, ids)
    assert "embedded Redis exited with code -9; restarting" in served.log_path.read_text()


def test_a_post_while_redis_is_down_is_kept_and_runs_later(served, networks):
    _slow, tiny = networks
    redis = served.child("redis-server")
    redis.send_signal(signal.SIGSTOP)  # down for the API, and not yet dead for the supervisor
    try:
        started = time.monotonic()
        audit_id = served.submit(tiny, TINY_OPTIONS)
        assert time.monotonic() - started < 30  # a few broker socket timeouts, then 202
        assert served.audit(audit_id)["status"] == "queued"
    finally:
        redis.send_signal(signal.SIGKILL)  # and now it dies: the supervisor brings back a fresh one

    _all_succeed(served, [audit_id])


def test_a_killed_serve_loses_nothing_once_started_again(networks, tmp_path):
    first = Served(tmp_path, tmp_path / "data", **ONE_SLOT)
    try:
        first.wait_ready()
        ids = _running_with_queue(first, networks)
        children = psutil.Process(first.process.pid).children(recursive=True)
        first.process.kill()
        first.process.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=60)  # they follow serve (PDEATHSIG)
        assert not alive
    finally:
        first.stop()

    second = Served(tmp_path, tmp_path / "data", log_name="serve-again.log", **ONE_SLOT)
    try:
        second.wait_ready()
        _all_succeed(second, ids)
    finally:
        second.stop()


def test_an_audit_the_api_died_before_sending_is_sent_by_a_worker(stack, tmp_path):
    """What an API killed between its commit and its send leaves behind: a queued row, no message."""
    from gradaudit.artifacts import ArtifactStore
    from models import audits as audit_rows
    from models.database import make_engine, make_session_factory

    tiny = save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "unsent.pt")
    with tiny.open("rb") as network_file:
        artifact = ArtifactStore(stack.settings.artifacts_path).save(network_file, max_bytes=10**8)
    sessions = make_session_factory(make_engine(stack.settings.sqlalchemy_url))
    with sessions() as db_session:
        audit_id = audit_rows.create_audit(
            db_session=db_session, artifact_sha256=artifact.sha256, artifact_format="torchscript",
            artifact_size=artifact.size, filename="unsent.pt", options={"input_shapes": {"x": [2, 32]}}).id
    stack.start_worker()

    audit = stack.wait_for(audit_id, FINISHED, timeout_s=60)

    assert audit["status"] == "succeeded", (audit, stack.logs())
    assert "is not in the broker; sending it" in stack.logs() or "never queued; sending it" in stack.logs()
