"""worker/sandbox/progress.py: the child's progress lines reach the parent while it runs, and what an untrusted
child writes there is taken only where it is a known phase, in order, with a progress in 0..1 that never goes back."""

from __future__ import annotations

import os
import time

import pytest

from worker.sandbox.child import run_in_child
from worker.sandbox.policy import policy_for
from worker.sandbox.progress import LINE_BYTES, READ_BYTES, ProgressChannel, parse_line


@pytest.fixture
def policy(make_settings, tmp_path):
    settings = make_settings(soft_time_limit_s=10, hard_time_limit_s=20, audit_memory_mb=256)
    return policy_for(settings, tmp_path / "scratch", [], drop_user=True)


class Received:
    """What the parent passed on, with the moment it came."""

    def __init__(self):
        self.items: list[tuple[str, float]] = []
        self.times: list[float] = []

    def __call__(self, phase: str, progress: float) -> None:
        self.items.append((phase, progress))
        self.times.append(time.monotonic())


@pytest.mark.parametrize(("line", "parsed"), [
    (b"probing 0.4200", ("probing", 0.42)),
    (b"verifying 1", ("verifying", 1.0)),
    (b"loading 0", ("loading", 0.0)),
    (b"probing nan", None), (b"probing inf", None), (b"probing -0.1", None), (b"probing 1.5", None),
    (b"probing", None), (b"probing 0.5 extra", None), (b"sleeping 0.5", None), (b"", None),
    (b"\xff\xfe 0.5", None), (b"probing " + b"0" * LINE_BYTES, None), (b"PROBING 0.5", None),
])
def test_a_line_is_a_known_phase_and_a_finite_progress_in_0_1(line, parsed):
    assert parse_line(line) == parsed


def _fed(chunks: list[bytes]) -> list[tuple[str, float]]:
    """What a parent passes on when the child wrote these chunks."""
    received = Received()
    channel = ProgressChannel(received)
    channel.open()
    try:
        for chunk in chunks:
            os.write(channel.write_fd, chunk)
            assert channel.receive()
    finally:
        os.close(channel.write_fd)
        channel.close()
    return received.items


def test_the_parent_takes_phases_in_order_and_progress_that_never_goes_back():
    assert _fed([b"loading 0\nprobing 0.2\nloading 0.3\nprobing 0.1\nprobing 0.2\ndiagnosing 0.45\n"]) == [
        ("loading", 0.0), ("probing", 0.2), ("diagnosing", 0.45)]


def test_a_line_split_across_reads_is_joined_and_an_overlong_one_dropped():
    assert _fed([b"load", b"ing 0.1\nprob", b"ing 0.2\n"]) == [("loading", 0.1), ("probing", 0.2)]
    assert _fed([b"x" * (LINE_BYTES + 1), b"y" * 10 + b"\nprobing 0.3\n"]) == [("probing", 0.3)]


def test_a_flood_is_read_a_bounded_chunk_at_a_time_and_not_kept():
    received = Received()
    channel = ProgressChannel(received)
    channel.open()
    os.set_blocking(channel.write_fd, False)
    os.set_blocking(channel.read_fd, False)
    try:
        written = _fill(channel.write_fd, b"A" * 4096)
        assert channel.receive()
        left = 0
        try:
            while chunk := os.read(channel.read_fd, 65536):
                left += len(chunk)
        except BlockingIOError:
            pass
    finally:
        os.close(channel.write_fd)
        channel.close()
    assert written - left == READ_BYTES  # one receive read no more than READ_BYTES
    assert len(channel._partial) <= LINE_BYTES and received.items == []


def _fill(fd: int, block: bytes) -> int:
    """Write until the pipe is full; the bytes written."""
    written = 0
    try:
        while True:
            written += os.write(fd, block)
    except BlockingIOError:
        return written


def test_the_child_never_waits_on_a_full_pipe_and_sends_a_phase_at_most_every_interval():
    clock = [0.0]
    channel = ProgressChannel(Received(), clock=lambda: clock[0])
    channel.open()
    try:
        os.set_blocking(channel.write_fd, False)
        channel.send("probing", 0.2)
        channel.send("probing", 0.3)  # too soon: dropped
        clock[0] += 1.0
        channel.send("probing", 0.4)
        channel.send("diagnosing", 0.45)  # a new phase goes at once
        assert os.read(channel.read_fd, 4096) == b"probing 0.2000\nprobing 0.4000\ndiagnosing 0.4500\n"
        _fill(channel.write_fd, b"x" * 4096)  # send must return, not block
        clock[0] += 1.0
        channel.send("verifying", 0.6)
    finally:
        os.close(channel.write_fd)
        channel.close()


def test_progress_reaches_the_parent_while_the_child_still_runs(policy):
    received = Received()
    channel = ProgressChannel(received)

    def work(_reads):
        channel.send("loading", 0.0)
        channel.send("probing", 0.3)
        time.sleep(1.0)
        return {"finished_at": time.monotonic()}

    answer = run_in_child(work, policy, progress=channel)

    assert received.items == [("loading", 0.0), ("probing", 0.3)]
    assert received.times[-1] < answer["finished_at"] - 0.5  # passed on before the child finished


def test_a_hostile_child_gets_only_valid_progress_through_and_its_answer_still_arrives(policy):
    received = Received()
    channel = ProgressChannel(received)

    def work(_reads):
        fd = channel.write_fd
        for junk in (b"verifying 0.9\n", b"loading 0.95\n", b"probing nan\n", b"\x00" * 100000, b"\n",
                     b"verifying 2\n", b"rm -rf / 1\n", b"verifying 0.8\n", b"verifying 0.97\n"):
            try:
                os.write(fd, junk)
            except BlockingIOError:
                pass
        return {"ok": True}

    answer = run_in_child(work, policy, progress=channel)

    assert answer["ok"] is True
    assert received.items in ([("verifying", 0.9), ("verifying", 0.97)], [("verifying", 0.9)])


def test_the_child_keeps_the_progress_pipe_and_nothing_else_it_inherited(policy):
    def work(_reads):
        return {"open": [fd for fd in range(3, 1024) if _is_open(fd)]}

    plain = run_in_child(work, policy)
    with_progress = run_in_child(work, policy, progress=ProgressChannel(Received()))

    assert len(plain["open"]) == 1  # the answer pipe
    assert len(with_progress["open"]) == 2


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_the_childs_seconds_per_phase_are_kept_only_for_known_phases_as_plain_numbers(policy):
    from worker.sandbox.codec import decode_answer

    seconds = {"loading": 1.5, "checking_parity": 2, "probing": "3", "sleeping": 3.0, "diagnosing": -1.0,
               "verifying": float("nan"), "converting": True}
    result = {"network": {"format": "onnx", "parameters": 1, "layers": 0}, "setup": {"phase_seconds": seconds},
              "findings": [], "verdict": "healthy", "layers": []}

    decoded = decode_answer({"result": result}, policy)
    hostile = decode_answer({"result": {**result, "setup": {"phase_seconds": ["loading", 1]}}}, policy)

    assert decoded.setup["phase_seconds"] == {"loading": 1.5, "checking_parity": 2.0}
    assert hostile.setup["phase_seconds"] == {}
