"""The HTML report rendered from a report document: one mark per layer, the finding's layers highlighted, an en dash
where a layer has no such value, the trend the diagnosis fits, hostile names escaped, nothing loaded."""

from __future__ import annotations

import math
import re

import pytest

from gradaudit.html_report import render_html
from gradaudit.report_charts import DASH, depth_trend
from gradaudit.schema import LayerRecord
from gradaudit.thresholds import CRITICAL_DECADES, WARNING_DECADES
from tests.support.html_pages import parse
from tests.support.reports import finding, layer, recommendation, report
from worker.diagnosis.diagnose import weight_layers
from worker.diagnosis.trend import gradient_trend

DEPTH = 7


def vanishing_layers(depth: int = DEPTH) -> list[dict]:
    """Gemm, Sigmoid, Gemm, ... Gemm: the output gradient a decade smaller per layer toward the input."""
    layers = []
    for index in range(2 * depth - 1):
        scale = 10.0 ** -(2 * depth - 2 - index)
        if index % 2:
            layers.append(layer(f"/{index}/Sigmoid", index, kind="Sigmoid", parameters=0, output_grad_norm=scale,
                                saturated_fraction=0.25))
        else:
            layers.append(layer(f"/{index}/Gemm", index, grad_norm=scale, output_grad_norm=scale))
    return layers


@pytest.fixture
def vanishing():
    layers = vanishing_layers()
    named = tuple(entry["name"] for entry in layers if entry["parameters"])[:3]
    return report(layers, [finding("vanishing_gradient", "critical", layers=named)])


def flow_layers(page) -> list:
    return parse(page).by_id("gradient-flow").find_all("g", "layer")


def test_the_gradient_flow_chart_has_one_mark_per_layer(vanishing):
    groups = flow_layers(render_html(vanishing))

    assert [group.attrs["data-layer"] for group in groups] == [entry["name"] for entry in vanishing["layers"]]
    assert [len(group.find_all(css_class="output-grad")) for group in groups] == [1] * len(groups)
    # dL/dW only where the layer has weights.
    assert [len(group.find_all(css_class="weight-grad")) for group in groups] == \
        [1 if entry["parameters"] else 0 for entry in vanishing["layers"]]


def test_the_layers_a_finding_names_are_highlighted_in_every_chart_and_the_table(vanishing):
    named = vanishing["findings"][0]["layers"]
    page = parse(render_html(vanishing))

    for chart in ("gradient-flow", "activation-health", "grad-to-weight"):
        flagged = page.by_id(chart).find_all("g", "flagged")
        assert [group.attrs["data-layer"] for group in flagged] == named, chart
        assert all(group.attrs["data-findings"] == "vanishing_gradient" for group in flagged)
        assert {"severity-critical"} <= set.intersection(*(group.classes for group in flagged))
    rows = page.by_id("layers").find_all("tr", "flagged")
    assert [row.attrs["data-layer"] for row in rows] == named


def test_a_layer_without_parameters_shows_an_en_dash_not_zero(vanishing):
    rows = parse(render_html(vanishing)).by_id("layers").find_all("tr")[1:]
    sigmoid = next(row for row in rows if row.attrs["data-layer"].endswith("Sigmoid"))
    cells = [cell.text for cell in sigmoid.find_all("td")]

    assert DASH == "\u2013"
    assert cells[3:7] == [DASH] * 4  # parameters, ||W||, ||dL/dW||, their ratio
    gemm = next(row for row in rows if row.attrs["data-layer"].endswith("Gemm"))
    assert gemm.find_all("td")[3].text == "272"


def test_the_trend_line_is_the_fit_the_diagnosis_makes():
    jitter = [1.0, 3.0, 0.5, 2.0, 1.0, 4.0, 0.7]
    layers = vanishing_layers()
    for entry, factor in zip((e for e in layers if e["parameters"]), jitter):
        entry["batch_rows"][0]["output_grad_norm"] *= factor
    built = report(layers, [])

    drawn = depth_trend(built["layers"])
    records = [LayerRecord(**{key: value for key, value in entry.items()}) for entry in layers]
    judged = gradient_trend(weight_layers(records))

    assert drawn.change_decades == pytest.approx(judged.change_decades, abs=1e-9)
    assert drawn.change_decades < -WARNING_DECADES
    assert len(drawn.columns) == judged.points // 2  # every weight layer below the output one, two batches each


def test_the_bands_are_measured_from_the_trends_output_end(vanishing):
    chart = parse(render_html(vanishing)).by_id("gradient-flow")
    trend = depth_trend(vanishing["layers"])
    line = [tuple(map(float, point.split(","))) for point in
            chart.find_all("polyline", "trend")[0].attrs["points"].split()]
    (_, start_y), (_, end_y) = line[0], line[-1]
    per_decade = (start_y - end_y) / -trend.change_decades
    below = [band for band in chart.find_all("rect", "band") if float(band.attrs["y"]) > end_y]
    warning, critical = (next(b for b in below if css in b.classes) for css in ("band-warning", "band-critical"))

    assert trend.output_end == pytest.approx(-2.0)  # exact decades here: the line ends at 1e-2
    assert float(warning.attrs["y"]) == pytest.approx(end_y + WARNING_DECADES * per_decade, abs=0.2)
    assert float(critical.attrs["y"]) == pytest.approx(end_y + CRITICAL_DECADES * per_decade, abs=0.2)


def test_uploaded_names_are_escaped_everywhere():
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    layers = [layer(hostile, 0), layer(f"{hostile}/act", 1, kind="Relu<b>", parameters=0), layer("out", 2)]
    page = render_html(report(layers, [finding("dead_relu", "warning", layers=(hostile,), title=hostile,
                                               evidence={hostile: hostile})], audit_id="a<1>"))

    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page
    tree = parse(page)
    assert not tree.find_all("script") and not tree.find_all("img")
    assert [group.attrs["data-layer"] for group in tree.by_id("gradient-flow").find_all("g", "flagged")] == [hostile]


def test_the_page_loads_nothing_and_runs_no_script(vanishing):
    page = render_html(vanishing)
    tree = parse(page)

    assert not tree.find_all("script") and not tree.find_all("iframe")
    assert [(link.attrs["rel"], link.attrs["href"]) for link in tree.find_all("link")] == [("icon", "data:,")]
    assert not [element for element in tree.descendants() if "src" in element.attrs or
                any(name.startswith("on") for name in element.attrs)]
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * 3


def test_a_verified_fix_shows_before_and_after_and_where_its_network_is():
    fix = recommendation("use_relu", "replace the sigmoid", status="resolved")
    fix["verification"]["training"] = {"steps": 3, "loss_original": [2.3, 2.2, 2.1], "loss_patched": [2.3, 1.9, None]}
    fix["network"] = {"format": "onnx", "size": 1234, "sha256": "ef" * 32}
    found = finding("vanishing_gradient", "critical", recommendations=[fix])
    served = parse(render_html(report(vanishing_layers(3), [found], audit_id="a1")))
    local = dict(fix, network={"format": "onnx", "size": 1234, "file": "fixes/vanishing_gradient--use_relu.onnx"})
    written = render_html(report(vanishing_layers(3), [dict(found, recommendations=[local])], audit_id=None))

    block = served.find_all("div", "fix")[0]
    assert "fitted_change_decades: -6 \u2192 -0.5" in block.text
    assert [link.attrs["href"] for link in block.find_all("a")] == \
        ["/v1/audits/a1/remedies/use_relu/network?finding=vanishing_gradient"]
    assert len(block.find_all("svg", "loss-curves")) == 1
    assert "fixes/vanishing_gradient--use_relu.onnx" in written and "/v1/audits" not in written


def test_the_setup_shows_device_batches_loss_limits_and_parity(vanishing):
    vanishing["setup"].update({"batches": 3, "time_limit_s": 900, "memory_limit_mb": 4096,
                               "onnxruntime_max_abs_diff": 5.96e-08, "onnxruntime_tolerance": 1e-4})
    setup = parse(render_html(vanishing)).by_id("setup").text

    for expected in ("device", "cpu", "probe batches", "cross_entropy", "time limit (s)", "900", "4,096",
                     "max |difference| 5.96e-08", "tolerance 0.0001"):
        assert expected in setup


def test_a_zero_gradient_sits_on_the_floor_and_a_report_without_layers_renders():
    dead = [layer("/0/Gemm", 0, grad_norm=0.0, output_grad_norm=0.0), layer("/1/Gemm", 1), layer("/2/Gemm", 2)]
    chart = parse(render_html(report(dead, []))).by_id("gradient-flow")
    empty = parse(render_html(report([], [], verdict="healthy")))

    assert len(chart.find_all(css_class="off-scale")) == 2
    assert empty.by_id("verdict").text == "healthy" and not empty.by_id("gradient-flow").find_all("g", "layer")


def test_a_finding_stored_before_findings_had_every_field_renders():
    old = {"code": "vanishing_gradients", "severity": "warning", "title": "Gradients shrink toward the input",
           "layers": ["/0/Gemm"], "evidence": {"ratio": 1e-6},
           "recommendations": [{"code": "residual", "text": "add skip connections"}]}
    card = parse(render_html(report(vanishing_layers(3), [old]))).find_all("section", "finding")[0]

    assert "Gradients shrink toward the input" in card.text and "add skip connections" in card.text
    assert f"confidence {DASH}" in card.text


@pytest.mark.parametrize("count", [1, 40, 400])
def test_charts_stay_readable_at_any_depth(count):
    layers = [layer(f"/{index}/Gemm", index, grad_norm=10.0 ** -(index % 7)) for index in range(count)]
    chart = parse(render_html(report(layers, []))).by_id("gradient-flow")
    width = float(chart.attrs["width"])

    assert len(chart.find_all("g", "layer")) == count
    assert 100 < width <= 64 + 16 + max(6 * count, 900) and math.isfinite(width)
