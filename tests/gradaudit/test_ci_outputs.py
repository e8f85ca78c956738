"""gradaudit.ci_outputs: the JUnit XML parses back with one testcase per check and failures that agree with the
gate; the Markdown summary's table has one well-formed row per finding."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest

from gradaudit.ci_outputs import (
    evidence_text,
    render_junit,
    render_junit_error,
    render_markdown,
    render_markdown_error,
)
from gradaudit.compare import compare_reports
from gradaudit.schema import FINDING_CODES
from tests.support.reports import finding, layer, recommendation, report

LAYERS = [layer("/0/Gemm", 0), layer("/1/Sigmoid", 1, kind="Sigmoid", parameters=0), layer("/2/Gemm", 2)]
VANISHING = finding("vanishing_gradient", "critical", layers=("/0/Gemm", "/2/Gemm", "/4/Gemm"),
                    title="Vanishing gradients: 5.9 decades",
                    evidence={"slope_decades_per_layer": 0.848123, "fitted_change_decades": -5.936, "layers_fitted": 8},
                    recommendations=[recommendation("use_relu", "Replace the sigmoid with ReLU", "resolved"),
                                     recommendation("add_batch_norm", "Add BatchNorm", "improved")])
SATURATED = finding("saturated_activation", "warning", layers=("/1/Sigmoid",), title="Saturated sigmoids")
DEAD = finding("dead_relu", "info", title="A few dead ReLUs", recommendations=[])


def parsed(xml: str) -> ElementTree.Element:
    """The testsuite of a JUnit document, after checking the document's shape."""
    root = ElementTree.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites" and len(root) == 1
    return root[0]


def cases(suite: ElementTree.Element) -> dict[str, ElementTree.Element]:
    """The testcases by name, in document order."""
    return {case.get("name"): case for case in suite.iter("testcase")}


def test_one_testcase_per_finding_code_and_a_failure_per_serious_finding():
    suite = parsed(render_junit(report(LAYERS, [SATURATED, DEAD, VANISHING]), source="nets/deep.onnx"))
    by_name = cases(suite)

    assert list(by_name) == list(FINDING_CODES)
    assert {case.get("classname") for case in by_name.values()} == {"gradaudit.deep"}
    failed = {name for name, case in by_name.items() if case.find("failure") is not None}
    assert failed == {"vanishing_gradient", "saturated_activation"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("9", "2", "0")
    assert by_name["dead_relu"].find("failure") is None
    assert by_name["dead_relu"].findtext("system-out").startswith("info: A few dead ReLUs")
    assert by_name["poor_initialization"].find("failure") is None and len(by_name["poor_initialization"]) == 0


def test_a_failure_carries_the_title_the_layers_the_evidence_and_the_first_fix():
    suite = parsed(render_junit(report(LAYERS, [VANISHING]), source="deep.onnx"))
    failure = cases(suite)["vanishing_gradient"].find("failure")

    assert failure.get("type") == "critical" and failure.get("message") == "Vanishing gradients: 5.9 decades"
    assert failure.text.splitlines()[1:] == [
        "layers: /0/Gemm … /4/Gemm (3 layers)",
        "evidence: slope_decades_per_layer=0.8481, fitted_change_decades=-5.936, layers_fitted=8",
        "first fix use_relu (resolved): Replace the sigmoid with ReLU",
    ]


@pytest.mark.parametrize(("fail_on", "failed"), [
    (None, {"vanishing_gradient", "saturated_activation"}), ("warning", {"vanishing_gradient", "saturated_activation"}),
    ("critical", {"vanishing_gradient"}),
])
def test_the_failures_follow_the_gate(fail_on, failed):
    suite = parsed(render_junit(report(LAYERS, [SATURATED, VANISHING]), source="deep.onnx", fail_on=fail_on))
    assert {name for name, case in cases(suite).items() if case.find("failure") is not None} == failed
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["fail_on"] == (fail_on or "warning") and properties["verdict"] == "critical"
    if fail_on == "critical":
        assert cases(suite)["saturated_activation"].findtext("system-out").startswith("warning: Saturated sigmoids")


def test_a_code_the_checks_do_not_know_is_a_check_too():
    suite = parsed(render_junit(report(LAYERS, [finding("some_new_finding", "warning")]), source="n.onnx"))
    assert list(cases(suite))[-1] == "some_new_finding"
    assert cases(suite)["some_new_finding"].find("failure") is not None


def test_a_regression_against_the_baseline_is_a_failing_check():
    now, before = report(LAYERS, [VANISHING], audit_id="new"), report(LAYERS, [], audit_id="old")
    regressed = cases(parsed(render_junit(now, source="n.onnx", comparison=compare_reports(now, before))))
    improved = cases(parsed(render_junit(before, source="n.onnx", comparison=compare_reports(before, now))))

    failure = regressed["regression"].find("failure")
    assert failure.get("message") == "worse than baseline old"
    assert failure.text.splitlines() == ["the verdict got worse: healthy -> critical",
                                         "new finding vanishing_gradient (critical)"]
    assert "regression" in improved and improved["regression"].find("failure") is None


def test_hostile_names_and_text_still_make_valid_xml():
    hostile = "/0/Gemm<&>\"'\x00\x1b\ud7ff"
    found = finding("vanishing_gradient", "critical", layers=(hostile,), title="a <b>title</b> & \x07 bell",
                    evidence={"layer": hostile})
    suite = parsed(render_junit(report([layer(hostile, 0)], [found]), source="we<ird> & name\x01.onnx"))

    failure = cases(suite)["vanishing_gradient"].find("failure")
    assert failure.get("message") == "a <b>title</b> & \ufffd bell"
    assert "/0/Gemm<&>\"'\ufffd\ufffd" in failure.text


def test_an_audit_that_could_not_run_is_one_testcase_in_error():
    suite = parsed(render_junit_error("input_shape_required", "TorchScript declares no shapes: --input-shape",
                                      source="net.pt"))
    [case] = suite.iter("testcase")
    error = case.find("error")
    assert case.get("name") == "audit" and (suite.get("tests"), suite.get("errors")) == ("1", "1")
    assert (error.get("type"), error.get("message")) == ("input_shape_required",
                                                         "TorchScript declares no shapes: --input-shape")


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every row of the Markdown table (pipes escaped with a backslash stay inside their cell)."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_the_markdown_has_the_verdict_and_a_row_per_finding():
    text = render_markdown(report(LAYERS, [VANISHING, SATURATED, DEAD]), source="deep.onnx")

    assert text.splitlines()[0] == "### gradaudit: **CRITICAL** for `deep.onnx`"
    assert "onnx network, 544 parameters in 3 layers. Audit `a1`." in text  # what --baseline takes
    assert table_rows(text) == [
        ["severity", "finding", "layers", "first fix"], ["---", "---", "---", "---"],
        ["critical", "`vanishing_gradient`", "/0/Gemm … /4/Gemm (3 layers)", "`use_relu` (resolved)"],
        ["warning", "`saturated_activation`", "/1/Sigmoid", "`use_relu`"],
        ["info", "`dead_relu`", "/0/Gemm", "–"],
    ]
    assert "  - first fix: Replace the sigmoid with ReLU" in text


def test_a_pipe_or_markup_in_a_name_stays_in_its_cell():
    odd = finding("dead_relu", "warning", layers=("a|b", "<script>"), title="t")
    [_, _, row] = table_rows(render_markdown(report(LAYERS, [odd]), source="n.onnx"))
    assert len(row) == 4 and row[2] == r"a\|b, &lt;script&gt;"


def test_a_healthy_network_has_no_table():
    text = render_markdown(report(LAYERS, [], audit_id=None), source="n.onnx")  # gradaudit audit: no id
    assert text.splitlines()[0] == "### gradaudit: **HEALTHY** for `n.onnx`"
    assert "in 3 layers.\n" in text
    assert "No findings." in text and table_rows(text) == []


def test_the_markdown_against_a_baseline():
    now, before = report(LAYERS, [VANISHING], audit_id="new"), report(LAYERS, [DEAD], audit_id="old")
    text = render_markdown(now, source="n.onnx", comparison=compare_reports(now, before))

    assert "#### Against baseline `old`: **regression**" in text
    assert ("Verdict healthy → critical; findings added `vanishing_gradient` (critical), removed `dead_relu` (info), "
            "severity changed none.") in text
    assert "- new finding vanishing_gradient (critical)" in text


def test_the_markdown_of_an_audit_that_could_not_run():
    text = render_markdown_error("input_shape_required", "give <shapes>", source="net.pt")
    assert text == "### gradaudit: **ERROR** for `net.pt`\n\n`input_shape_required`: give &lt;shapes&gt;\n"


def test_evidence_is_compact():
    evidence = {"ratio": 1234.56789, "layers": ["a", "b", "c", "d", "e", "f"], "also": {"slope": 0.123456},
                "finite": float("inf"), "count": 3}
    assert evidence_text(evidence) == ("ratio=1235, layers=[a, b, c, d, …], also={slope=0.1235}, finite=inf, "
                                       "count=3")
    assert len(evidence_text({f"key{i}": "x" * 50 for i in range(40)})) == 600
