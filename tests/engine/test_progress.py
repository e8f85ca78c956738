"""worker/engine/progress.py: phases in order, progress that never goes back, seconds per phase; and the phases an
audit of each format goes through (verification's re-probes of patched copies are not the audit's own)."""

from __future__ import annotations

import os

import pytest
import torch

from gradaudit.options import AuditOptions
from gradaudit.schema import PHASES
from tests.support.networks import (
    TwoLayers,
    deep_sigmoid,
    export_onnx,
    save_torchscript,
)
from worker.engine import progress
from worker.engine.audit import audit_network
from worker.remedies.audit import audit_with_remedies


class Clock:
    """A clock the test moves."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_spans_the_phases_in_order_and_never_goes_back():
    seen = []
    tracker = progress.Tracker(lambda phase, value: seen.append((phase, value)))
    for phase, fraction in [("loading", 0), ("probing", 0), ("probing", 0.5), ("probing", 0.25), ("loading", 1),
                            ("probing", 1), ("diagnosing", 0), ("verifying", 1)]:
        tracker.report(phase, fraction)

    assert [phase for phase, _ in seen] == ["loading", "probing", "probing", "probing", "probing", "diagnosing",
                                            "verifying"]  # the late "loading" is ignored
    values = [value for _, value in seen]
    assert values == sorted(values) and values[0] == 0.0 and 0.99 <= values[-1] < 1.0
    assert values[2] == values[3]  # probing 0.25 after 0.5 does not go back


def test_fractions_outside_0_1_are_clamped():
    tracker = progress.Tracker(None)
    tracker.report("probing", 7.0)
    assert tracker.progress == 0.45
    tracker.report("diagnosing", -3.0)
    assert tracker.progress == 0.45


def test_seconds_per_phase_count_until_the_next_phase_and_the_current_one_until_now():
    clock = Clock()
    tracker = progress.Tracker(None, clock=clock)
    tracker.report("loading")
    clock.now += 2
    tracker.report("probing")
    clock.now += 3
    tracker.report("probing", 1.0)
    clock.now += 0.5
    assert tracker.seconds() == {"loading": 2.0, "probing": 3.5}


def test_muted_reports_are_ignored_and_nothing_is_tracked_outside_reporting():
    progress.report("probing")  # no tracker: a no-op
    seen = []
    with progress.reporting(lambda phase, value: seen.append(phase)) as tracker:
        progress.report("diagnosing")
        with progress.muted():
            progress.report("verifying")
        progress.report("verifying", 0.5)
    assert seen == ["diagnosing", "verifying"] and tracker.phase == "verifying"
    progress.report("loading")
    assert seen == ["diagnosing", "verifying"]


def _audited(path, audit, **options):
    seen = []
    with progress.reporting(lambda phase, value: seen.append((phase, value))) as tracker:
        result = audit(path, options=AuditOptions(**options), device="cpu")
    return result, seen, tracker.seconds()


def _phases(seen) -> list[str]:
    return list(dict.fromkeys(phase for phase, _ in seen))


def test_an_onnx_audit_goes_through_parity_and_conversion_and_probes_batch_by_batch(tmp_path):
    path = export_onnx(TwoLayers(), torch.randn(2, 4), tmp_path / "net.onnx", dynamic={0: "n"})
    _, seen, seconds = _audited(path, audit_network, batches=4)

    assert _phases(seen) == ["loading", "checking_parity", "converting", "probing", "diagnosing"]
    assert [value for _, value in seen] == sorted(value for _, value in seen)
    assert [value for phase, value in seen if phase == "probing"] == [0.15, 0.225, 0.3, 0.375, 0.45]
    assert set(seconds) == set(_phases(seen)) and all(value >= 0 for value in seconds.values())


def test_a_torchscript_audit_skips_the_onnx_phases(tmp_path):
    path = save_torchscript(TwoLayers(), tmp_path / "net.pt")
    _, seen, _ = _audited(path, audit_network, input_shapes={"x": [2, 4]})
    assert _phases(seen) == ["loading", "probing", "diagnosing"]


def test_verification_reports_each_recommendation_and_not_the_copies_own_phases(tmp_path):
    path = export_onnx(deep_sigmoid(8, 32), torch.randn(4, 32), tmp_path / "net.onnx", dynamic={0: "n"})
    cwd = os.getcwd()
    os.chdir(tmp_path)  # patched copies go to ./fixes, as in the sandbox's scratch folder
    try:
        result, seen, seconds = _audited(path, audit_with_remedies, verify_steps=0)
    finally:
        os.chdir(cwd)

    assert result.setup["remedies"]["verified"]
    assert _phases(seen) == ["loading", "checking_parity", "converting", "probing", "diagnosing", "verifying"]
    verifying = [value for phase, value in seen if phase == "verifying"]
    recommendations = sum(len(finding["recommendations"]) for finding in result.findings)
    assert len(verifying) == 1 + recommendations  # entering the phase, then one per recommendation
    assert verifying == sorted(verifying) and verifying[0] == 0.5 and verifying[-1] < 0.99
    assert seconds["verifying"] > 0


def test_the_phases_are_the_schemas():
    assert tuple(progress._SPANS) == PHASES
    ends = [span for pair in progress._SPANS.values() for span in pair]
    assert ends == sorted(ends) and ends[0] == 0.0 and ends[-1] < 1.0


@pytest.mark.parametrize("phase", ["", "Loading", "done"])
def test_an_unknown_phase_is_a_programming_error(phase):
    with pytest.raises(ValueError):
        progress.Tracker(None).report(phase, 0.0)
