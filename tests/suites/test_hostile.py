"""The hostile corpus's judge, without a server: a wrong code, a 5xx, a leaked secret, a written marker and an
unfinished audit each count."""

from __future__ import annotations

import pytest

from suites.hostile import CASES, Case, Ground, Request
from suites.hostile_run import Outcome, summary

CASE = Case("example", "garbage", lambda ground: Request(), 202, None, ("failed", "invalid_onnx"))


@pytest.fixture
def ground():
    planted = Ground.create()
    yield planted
    planted.remove()


def test_the_expected_answer_has_no_problems(ground):
    outcome = Outcome(CASE, 202, None, "a1", "failed", "invalid_onnx", 422, [b"{}"])
    assert outcome.problems(ground) == [] and not outcome.stuck()


def test_a_wrong_code_a_server_error_a_leak_and_a_stuck_audit_are_each_seen(ground):
    wrong = Outcome(CASE, 202, None, "a1", "failed", "internal_error", 500, [ground.secret_bytes])
    stuck = Outcome(CASE, 202, None, "a2", "running")
    ground.marker_for(CASE).write_text("ran")
    assert len(wrong.problems(ground)) == 3 and wrong.server_errors() == 1 and wrong.leaks(ground) == 2
    assert stuck.stuck() and "stuck=1" in summary([stuck], ground, worker_restarts=0)


def test_a_succeeded_audit_lacking_its_finding_is_seen(ground):
    nan = Case("nan", "onnx", lambda ground: Request(), 202, None, ("succeeded", None), "nonfinite_values")
    assert Outcome(nan, 202, None, "a1", "succeeded", None, 200, [b"{}"], ["nonfinite_values"]).problems(ground) == []
    assert "lack nonfinite_values" in Outcome(nan, 202, None, "a1", "succeeded", None, 200, [b"{}"]).problems(ground)[0]


def test_the_corpus_has_unique_names_and_at_least_60_cases():
    assert len(CASES) >= 60 and len({case.name for case in CASES}) == len(CASES)
