"""cli/progress.py: on a terminal a bar redrawn in place; elsewhere one line per change of status or phase."""

from __future__ import annotations

import io

from cli.progress import LocalPhases, WaitDisplay, bar


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _polls(display: WaitDisplay, clock: Clock) -> None:
    for status, phase, progress in [("queued", None, None), ("queued", None, None), ("running", "loading", 0.0),
                                    ("running", "probing", 0.2), ("running", "probing", 0.4),
                                    ("running", "verifying", 0.7), ("succeeded", "verifying", 1.0)]:
        display({"status": status, "phase": phase, "progress": progress})
        clock.now += 1.5


def test_off_a_terminal_one_line_per_change_and_no_carriage_return():
    stream, clock = io.StringIO(), Clock()
    _polls(WaitDisplay(stream, on_terminal=False, clock=clock), clock)
    assert stream.getvalue().splitlines() == [
        "   0.0s queued", "   3.0s running: loading (0%)", "   4.5s running: probing (20%)",
        "   7.5s running: verifying (70%)", "   9.0s succeeded"]


def test_on_a_terminal_a_bar_redrawn_in_place_and_ended_with_a_newline():
    stream, clock = io.StringIO(), Clock()
    _polls(WaitDisplay(stream, on_terminal=True, clock=clock), clock)
    drawn = stream.getvalue()
    assert drawn.count("\r") == 7 and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "\r[##########..............]  40% running: probing" in drawn
    assert drawn.split("\r")[-1].startswith(f"{bar(1.0)} succeeded")


def test_the_bar_is_bounded():
    assert bar(None) == "[........................]   0%"
    assert bar(7.0) == bar(1.0) == "[########################] 100%"
    assert bar(0.5, finished=True) == bar(1.0)


def test_a_local_audit_draws_its_phases_and_ends_the_line_once():
    stream = io.StringIO()
    phases = LocalPhases(stream)
    phases("loading", 0.0)
    phases("probing", 0.3)
    phases.close()
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("\n")
    quiet = io.StringIO()
    LocalPhases(quiet).close()
    assert quiet.getvalue() == ""
