"""Supervised: a dead child is restarted after a delay that doubles while it keeps dying."""

from __future__ import annotations

from cli.supervisor import Supervised


class FakeChild:
    """A process whose exit the test decides."""

    def __init__(self):
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


def supervised(**options) -> tuple[Supervised, list[FakeChild], list[str]]:
    started, said = [], []

    def start() -> FakeChild:
        started.append(FakeChild())
        return started[-1]

    child = Supervised("worker", start, first_delay_s=1, max_delay_s=4, stable_after_s=10, say=said.append, **options)
    child.start()
    return child, started, said


def test_a_live_child_is_left_alone():
    child, started, said = supervised()
    child.check(now=1e9)
    assert (len(started), child.restarts, said) == (1, 0, [])


def test_a_dead_child_is_restarted_after_a_doubling_delay():
    child, started, said = supervised()
    restarts_at = []
    for now in [x / 2 for x in range(40)]:
        if started[-1].code is None:
            started[-1].code = -9  # dies at once, every time
        before = len(started)
        child.check(now=now)
        if len(started) > before:
            restarts_at.append(now)
    # Each death is seen at the next check, half a second after the restart: seen at 0, restarted at 0+1, seen at
    # 1.5, restarted at 1.5+2, then 4+4, then after the cap of 4 s.
    assert restarts_at[:5] == [1.0, 3.5, 8.0, 12.5, 17.0]
    assert child.restarts == len(restarts_at)
    assert said[0] == "worker exited with code -9; restarting in 1 s"


def test_the_delay_resets_once_the_child_stayed_up():
    child, started, _said = supervised()
    started[-1].code = 1
    child.check(now=100.0)
    child.check(now=101.0)  # restarted; next delay would be 2
    child._started_at = 101.0
    child.check(now=120.0)  # up for 19 s: stable
    started[-1].code = 1
    child.check(now=121.0)
    child.check(now=122.0)
    assert len(started) == 3  # restarted after 1 s again, not 2


def test_a_start_that_fails_is_tried_again_later():
    attempts, said = [], []

    def start():
        attempts.append(1)
        if len(attempts) == 2:
            raise RuntimeError("the embedded Redis did not start")
        return FakeChild()

    child = Supervised("embedded Redis", start, first_delay_s=1, say=said.append)
    child.start()
    child.process.code = -9
    child.check(now=0.0)
    child.check(now=1.0)  # the second start fails
    assert child.process is None and "did not start" in said[-1]
    child.check(now=2.9)
    assert len(attempts) == 2
    child.check(now=3.0)
    assert len(attempts) == 3 and child.process.poll() is None
