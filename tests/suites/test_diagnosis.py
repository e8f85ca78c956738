"""The labelled diagnosis suite's labels: every finding code is labelled somewhere, and labels follow mean field."""

from __future__ import annotations

from suites.diagnosis import cases, saturated_sigmoid_decay
from worker.diagnosis.diagnose import FINDING_CODES


def test_every_finding_code_has_labelled_cases_in_the_full_sweep():
    labelled = {code for case in cases("full") for code in case.expected}
    assert labelled == set(FINDING_CODES)
    assert all(case.citation for case in cases("full"))


def test_saturated_sigmoid_stacks_are_labelled_vanishing_where_mean_field_loses_the_threshold():
    assert saturated_sigmoid_decay(32, 14) > 1.5 > saturated_sigmoid_decay(32, 10) > 1.0  # chi 0.57 per layer
    assert saturated_sigmoid_decay(64, 14) < 1.0 and saturated_sigmoid_decay(128, 14) < 0  # chi 0.80, then 1.1
    labels = {c.name: c.expected for c in cases("full") if c.name.startswith("glorot_sigmoid_large")}
    assert "vanishing_gradient" in labels["glorot_sigmoid_large_d14w32s0"]
    assert "vanishing_gradient" not in labels["glorot_sigmoid_large_d10w32s0"] | labels["glorot_sigmoid_large_d14w64s0"]
