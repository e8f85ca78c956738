"""gradaudit.compare: findings matched by code, layers by name, and when an audit is a regression of its baseline."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter

from gradaudit.compare import Comparison, compare_reports, render_comparison
from tests.support.reports import finding, layer, report

LAYERS = [layer("/0/Gemm", 0, grad_norm=1e-4, output_grad_norm=1e-4),
          layer("/1/Sigmoid", 1, kind="Sigmoid", parameters=0, output_grad_norm=1e-3, saturated_fraction=0.25),
          layer("/2/Gemm", 2, grad_norm=1e-2, output_grad_norm=1e-2)]


def compared(after_findings, before_findings, *, after_layers=LAYERS, before_layers=LAYERS, **verdicts):
    """The comparison of two reports (verdict_after/verdict_before override the worst severity)."""
    return compare_reports(report(after_layers, after_findings, audit_id="new", verdict=verdicts.get("after")),
                           report(before_layers, before_findings, audit_id="old", verdict=verdicts.get("before")))


def test_a_report_against_itself_changes_nothing():
    same = [finding("vanishing_gradient", "warning")]
    comparison = compared(same, same)

    assert comparison["regression"] is False and comparison["reasons"] == []
    assert (comparison["audit_id"], comparison["baseline_id"]) == ("new", "old")
    assert comparison["verdict"] == {"before": "warning", "after": "warning"}
    assert comparison["findings"] == {"added": [], "removed": [], "severity_changed": [],
                                      "unchanged": ["vanishing_gradient"]}
    assert [entry["name"] for entry in comparison["layers"]["matched"]] == ["/0/Gemm", "/1/Sigmoid", "/2/Gemm"]
    assert all(entry["output_grad_norm"]["decades"] == 0 for entry in comparison["layers"]["matched"])
    TypeAdapter(Comparison).validate_python(comparison)  # the document is what the OpenAPI schema says


def test_a_worse_verdict_is_a_regression():
    comparison = compared([finding("dead_relu", "info")], [finding("dead_relu", "info")],
                          after="warning", before="healthy")
    assert comparison["regression"] is True
    assert comparison["reasons"] == ["the verdict got worse: healthy -> warning"]


@pytest.mark.parametrize(("severity", "regression"), [("info", False), ("warning", True), ("critical", True)])
def test_an_added_finding_is_a_regression_from_warning_up(severity, regression):
    comparison = compared([finding("exploding_gradient", severity)], [], after="healthy", before="healthy")

    assert comparison["findings"]["added"] == [{"code": "exploding_gradient", "severity": severity,
                                                "title": "exploding_gradient seen", "layers": ["/0/Gemm"]}]
    assert comparison["regression"] is regression
    assert comparison["reasons"] == ([f"new finding exploding_gradient ({severity})"] if regression else [])


@pytest.mark.parametrize(("before", "after", "regression"), [
    ("info", "warning", True), ("warning", "critical", True), ("info", "critical", True),
    ("critical", "warning", False), ("warning", "info", False),
])
def test_a_finding_whose_severity_rose_is_a_regression(before, after, regression):
    comparison = compared([finding("saturated_activation", after)], [finding("saturated_activation", before)],
                          after="warning", before="warning")  # the same verdict, so the finding alone decides

    assert comparison["findings"]["severity_changed"] == [
        {"code": "saturated_activation", "title": "saturated_activation seen", "before": before, "after": after}]
    assert comparison["regression"] is regression


def test_a_removed_finding_and_a_better_verdict_are_no_regression():
    comparison = compared([], [finding("vanishing_gradient", "critical")])

    assert comparison["findings"]["removed"][0]["code"] == "vanishing_gradient"
    assert comparison["verdict"] == {"before": "critical", "after": "healthy"}
    assert comparison["regression"] is False


def test_every_reason_is_listed():
    comparison = compared([finding("poor_initialization", "critical"), finding("dead_relu", "warning")],
                          [finding("dead_relu", "info")])
    assert comparison["reasons"] == ["the verdict got worse: healthy -> critical",
                                     "new finding poor_initialization (critical)",
                                     "dead_relu got more severe: info -> warning"]


def test_layers_are_matched_by_name_not_depth():
    before = [layer("/2/Gemm", 0, grad_norm=1e-2, output_grad_norm=1e-2), layer("/old/Gemm", 1)]
    after = [layer("/new/Gemm", 0), layer("/2/Gemm", 1, grad_norm=1e-5, output_grad_norm=1e-6)]
    layers = compared([], [], after_layers=after, before_layers=before)["layers"]

    [matched] = layers["matched"]
    assert (matched["name"], matched["depth"], matched["baseline_depth"]) == ("/2/Gemm", 1, 0)
    assert matched["grad_norm"] == {"before": 1e-2, "after": 1e-5, "decades": pytest.approx(-3)}
    assert matched["output_grad_norm"]["decades"] == pytest.approx(-4)
    assert matched["grad_to_weight"]["decades"] == pytest.approx(-3)
    assert (layers["only_in_audit"], layers["only_in_baseline"]) == (["/new/Gemm"], ["/old/Gemm"])


def test_a_layer_without_parameters_has_no_weight_gradient_to_compare():
    before = [layer("/1/Sigmoid", 0, kind="Sigmoid", parameters=0, saturated_fraction=0.25)]
    after = [layer("/1/Sigmoid", 0, kind="Sigmoid", parameters=0, saturated_fraction=0.75)]
    [sigmoid] = compared([], [], after_layers=after, before_layers=before)["layers"]["matched"]

    assert sigmoid["grad_norm"] == {"before": None, "after": None, "decades": None}
    assert sigmoid["grad_to_weight"] == {"before": None, "after": None, "decades": None}
    assert sigmoid["activation_saturated_fraction"] == {"before": 0.25, "after": 0.75, "change": 0.5}
    assert sigmoid["activation_zero_fraction"] == {"before": 0.0, "after": 0.0, "change": 0.0}


@pytest.mark.parametrize(("before", "after"), [(0.0, 1e-3), (1e-3, 0.0), (None, 1e-3), (math.inf, 1e-3)])
def test_a_scale_change_needs_two_positive_finite_values(before, after):
    layers_before = [layer("/0/Gemm", 0, output_grad_norm=before)]
    layers_after = [layer("/0/Gemm", 0, output_grad_norm=after)]
    [matched] = compared([], [], after_layers=layers_after, before_layers=layers_before)["layers"]["matched"]
    assert matched["output_grad_norm"]["decades"] is None


def test_an_unobserved_output_compares_as_null():
    unobserved = {**report([layer("/0/Gemm", 0)], [])["layers"][0], "output_grad": None, "activation": None}
    comparison = compare_reports({**report([], []), "layers": [unobserved]}, report([layer("/0/Gemm", 0)], []))
    [matched] = comparison["layers"]["matched"]
    assert matched["output_grad_norm"] == {"before": 1e-3, "after": None, "decades": None}
    assert matched["activation_zero_fraction"]["change"] is None


def test_the_text_names_the_flag_the_reasons_and_the_layers_that_moved_most():
    after = [layer("/0/Gemm", 0, output_grad_norm=1e-7), *LAYERS[1:]]
    text = render_comparison(compared([finding("vanishing_gradient", "critical", title="Gradients vanish")], [],
                                      after_layers=after))
    lines = text.splitlines()

    assert lines[0] == "audit new against baseline old: REGRESSION"
    assert lines[1] == "verdict: healthy -> critical"
    assert "  + [critical] vanishing_gradient: Gradients vanish" in lines
    assert "regression: new finding vanishing_gradient (critical)" in lines
    assert "layers: 3 matched, 0 only in the audit, 0 only in the baseline" in lines
    assert lines[-3].split()[:2] == ["/0/Gemm", "-3.00"]  # the largest move first


def test_the_text_of_no_regression():
    text = render_comparison(compared([], [finding("dead_relu", "warning")]))
    assert text.splitlines()[0] == "audit new against baseline old: no regression"
    assert "  - [warning] dead_relu: dead_relu seen" in text
