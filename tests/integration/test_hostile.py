"""The hostile corpus (suites/hostile.py) against one live `gradaudit serve`: every case gets its exact status and
code, no answer is a 5xx or holds the planted secret, no hostile code leaves a marker, and afterwards no audit is
stuck and the worker still audits an ordinary network."""

from __future__ import annotations

import collections

import pytest

from suites.hostile import CASES, Ground
from suites.hostile_run import plain_audit_succeeds, run_corpus, worker_restarts
from tests.support.served import Served

pytestmark = pytest.mark.integration

# Short limits so the time bombs end in seconds and the archive bombs stop early.
LIMITS = {"GRADAUDIT_SOFT_TIME_LIMIT_S": "8", "GRADAUDIT_HARD_TIME_LIMIT_S": "12",
          "GRADAUDIT_AUDIT_MEMORY_MB": "2048", "GRADAUDIT_MAX_EXTRACTED_MB": "64"}


@pytest.fixture(scope="module")
def ground():
    planted = Ground.create()
    yield planted
    planted.remove()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ground):
    """The corpus run once against one serve; (served, outcomes by case name)."""
    folder = tmp_path_factory.mktemp("hostile")
    served = Served(folder, folder / "data", **LIMITS)
    try:
        served.wait_ready()
        outcomes = run_corpus(served.url, CASES, ground, timeout_s=240)
        yield served, {outcome.case.name: outcome for outcome in outcomes}
    finally:
        served.stop()


def test_the_corpus_covers_every_category_with_at_least_60_cases():
    categories = collections.Counter(case.category for case in CASES)
    assert len(CASES) >= 60 and len({case.name for case in CASES}) == len(CASES)
    assert set(categories) == {"garbage", "pickle", "archive", "onnx", "torchscript", "options", "http"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_gets_its_exact_answer(corpus, ground, case):
    _, outcomes = corpus
    outcome = outcomes[case.name]
    assert outcome.problems(ground) == [], outcome.bodies[-1][:500]


def test_no_answer_is_a_server_error_or_leaks_and_none_is_stuck(corpus, ground):
    _, outcomes = corpus
    assert sum(outcome.server_errors() for outcome in outcomes.values()) == 0
    assert sum(outcome.leaks(ground) for outcome in outcomes.values()) == 0
    assert [name for name, outcome in outcomes.items() if outcome.stuck()] == []


def test_the_worker_is_alive_afterwards(corpus, ground):
    served, _ = corpus
    assert plain_audit_succeeds(served.url, ground), served.log()
    assert worker_restarts(served.log_path) == 0, served.log()
