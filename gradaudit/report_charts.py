"""The HTML report's charts, drawn from the report document alone: the gradient flow over depth with its fitted
trend and the diagnosis's bands, activation health, the grad-to-weight ratio, and verified fixes' loss curves.

Each layer is one column, in depth order, and one <g class="layer"> per chart, carrying its name in data-layer
and, where findings name it, class "flagged" and their codes in data-findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from gradaudit.svg_charts import (
    BOTTOM,
    RIGHT,
    Columns,
    LinearScale,
    LogScale,
    depth_axis,
    element,
    group,
    legend,
    linear_axis,
    log_axis,
    panel_title,
    plottable,
    polyline,
    svg,
)
from gradaudit.thresholds import CRITICAL_DECADES, WARNING_DECADES

# Karpathy's rule of thumb: a healthy SGD step changes a layer's weights by about 1e-3 of their norm. With
# learning rate lr, that is a gradient-to-weight ratio of 1e-3 / lr.
UPDATE_TO_WEIGHT = 1e-3
DEFAULT_LEARNING_RATE = 0.01  # gradaudit.options' default, for audits that ran no training steps
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
DASH = "\u2013"  # what a value that does not exist shows: an en dash, never 0


def figure(value: float | None, digits: int = 3) -> str:
    """A number as the report prints it; an en dash for none."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def flags(findings: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The findings naming each layer, by layer name."""
    named: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        for name in finding.get("layers", []):
            named.setdefault(name, []).append(finding)
    return named


def _layer_attributes(layer: dict[str, Any], flagged: list[dict[str, Any]]) -> dict[str, Any]:
    """The attributes of a layer's <g>: its name and depth, and the findings that name it."""
    attributes = {"data_layer": layer["name"], "data_depth": layer["depth"], "class_": "layer"}
    if flagged:
        worst = max(flagged, key=lambda finding: SEVERITY_RANK.get(finding["severity"], 0))["severity"]
        attributes["class_"] = f"layer flagged severity-{worst}"
        attributes["data_findings"] = " ".join(dict.fromkeys(finding["code"] for finding in flagged))
    return attributes


def _flag_columns(layers: list[dict[str, Any]], named: dict, columns: Columns, top: float, bottom: float) -> Markup:
    """A shaded column behind every layer a finding names."""
    shades = []
    for index, layer in enumerate(layers):
        if layer["name"] in named:
            severity = _layer_attributes(layer, named[layer["name"]])["class_"].split()[-1]
            shades.append(element("rect", x=columns.x(index) - columns.step / 2, y=top, width=columns.step,
                                  height=bottom - top, class_=f"flag-column {severity}"))
    return group(shades, class_="flag-columns")


@dataclass(frozen=True)
class DepthTrend:
    """A least-squares line of log10 ||dL/d output|| over the weight layers below the output layer, fitted to
    every probe batch's value as the diagnosis fits it (worker/diagnosis/trend.py)."""

    columns: list[int]  # the fitted layers' positions among all layers, input side first
    fitted: list[float]  # the line's log10 value at each of them
    change_decades: float  # input-side end minus output-side end: negative where the gradient vanishes

    @property
    def output_end(self) -> float:
        """The line's log10 value at the output-side end: the bands are measured from it."""
        return self.fitted[-1]


def depth_trend(layers: list[dict[str, Any]], least: int = 3) -> DepthTrend | None:
    """The fitted depth trend; None with fewer than `least` weight layers whose output gradient was measured."""
    weights = [(index, layer) for index, layer in enumerate(layers) if layer["parameters"] > 0][:-1]
    kept = [(order, index, [math.log10(batch["norm"]) for batch in _gradient_batches(layer)
                            if plottable(batch["norm"])]) for order, (index, layer) in enumerate(weights)]
    kept = [(order, index, ys) for order, index, ys in kept if ys]
    if len(kept) < least:
        return None
    xs = [float(order) for order, _, ys in kept for _ in ys]
    ys = [y for _, _, values in kept for y in values]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    fitted = [mean_y + slope * (order - mean_x) for order, _, _ in kept]
    return DepthTrend([index for _, index, _ in kept], fitted, fitted[0] - fitted[-1])


def _gradient_batches(layer: dict[str, Any]) -> list[dict[str, Any]]:
    return (layer.get("output_grad") or {}).get("batches") or []


def _output_gradient(layer: dict[str, Any]) -> float | None:
    return (layer.get("output_grad") or {}).get("norm")


def _weight_gradient(layer: dict[str, Any]) -> float | None:
    return layer["grad_norm"] if layer["parameters"] > 0 else None


def gradient_flow_chart(layers: list[dict[str, Any]], findings: list[dict[str, Any]]) -> Markup:
    """||dL/d output|| and ||dL/dW|| per layer on a log axis, the fitted depth trend, and the warning and critical
    bands the diagnosis judges that trend by, measured from its output-side end."""
    columns, trend, named = Columns.fitting(len(layers)), depth_trend(layers), flags(findings)
    values = [v for layer in layers for v in (_output_gradient(layer), _weight_gradient(layer))]
    if trend:
        values += [10 ** (trend.output_end + sign * WARNING_DECADES) for sign in (-1, 1)] + \
                  [10 ** y for y in trend.fitted]
    scale = LogScale.spanning(values, top=30, bottom=270)
    marks = [_gradient_marks(layer, index, columns, scale, named.get(layer["name"], []))
             for index, layer in enumerate(layers)]
    width, height = columns.left + columns.width + RIGHT, scale.bottom + BOTTOM
    return svg(width, height, [
        _bands(trend, scale, columns) if trend else Markup(""),
        _flag_columns(layers, named, columns, scale.top, scale.bottom),
        log_axis(scale, columns, "gradient norm (log)"),
        polyline([(columns.x(i), scale.y(_output_gradient(layer))) for i, layer in enumerate(layers)
                  if plottable(_output_gradient(layer))], class_="series-line output-grad-line"),
        _trend_line(trend, scale, columns) if trend else Markup(""),
        group(marks, class_="marks"),
        depth_axis(columns, scale.bottom),
        legend([("output-grad", "\u2016dL/d output\u2016"), ("weight-grad", "\u2016dL/dW\u2016"),
                ("trend", "fitted depth trend"), ("band-warning", "warning band"),
                ("band-critical", "critical band"), ("flag", "layer named by a finding")], columns.left, 14),
    ], label="Gradient flow: gradient norms per layer on a log axis", id="gradient-flow", class_="chart")


def _gradient_marks(layer: dict[str, Any], index: int, columns: Columns, scale: LogScale,
                    flagged: list[dict[str, Any]]) -> Markup:
    x, output, weight = columns.x(index), _output_gradient(layer), _weight_gradient(layer)
    tip = (f"{layer['depth']}: {layer['name']} ({layer['kind']})\n\u2016dL/d output\u2016 = {figure(output)}\n"
           f"\u2016dL/dW\u2016 = {figure(weight)}" + "".join(f"\n{finding['severity']}: {finding['code']}"
                                                          for finding in flagged))
    children = [element("title", tip)]
    if output is not None:
        children.append(_point(x, scale, output, "output-grad", circle=True))
    if weight is not None:
        children.append(_point(x, scale, weight, "weight-grad", circle=False))
    return group(children, **_layer_attributes(layer, flagged))


def _point(x: float, scale: LogScale, value: float, css_class: str, *, circle: bool) -> Markup:
    """A mark at value; a zero (or non-finite) value, which a log axis cannot place, a triangle on the floor."""
    if not plottable(value):
        floor = scale.bottom
        return element("polygon", points=f"{x - 4:.1f},{floor - 7:.1f} {x + 4:.1f},{floor - 7:.1f} {x:.1f},{floor:.1f}",
                       class_=f"mark {css_class} off-scale")
    y = scale.y(value)
    if circle:
        return element("circle", cx=x, cy=y, r=3.5, class_=f"mark {css_class}")
    return element("rect", x=x - 3, y=y - 3, width=6, height=6, class_=f"mark {css_class}")


def _bands(trend: DepthTrend, scale: LogScale, columns: Columns) -> Markup:
    """Warning and critical bands below (vanishing) and above (exploding) the trend's output-side end."""
    end, left, width = trend.output_end, columns.left, columns.width
    spans = [("band-warning", end - CRITICAL_DECADES, end - WARNING_DECADES),
             ("band-critical", scale.low - 1, end - CRITICAL_DECADES),
             ("band-warning", end + WARNING_DECADES, end + CRITICAL_DECADES),
             ("band-critical", end + CRITICAL_DECADES, scale.high + 1)]
    rects = []
    for css_class, low, high in spans:
        top, bottom = scale.y_exponent(high), scale.y_exponent(low)
        if bottom - top > 0.5:
            rects.append(element("rect", x=left, y=top, width=width, height=bottom - top, class_=f"band {css_class}"))
    return group(rects, class_="bands")


def _trend_line(trend: DepthTrend, scale: LogScale, columns: Columns) -> Markup:
    points = [(columns.x(index), scale.y_exponent(y)) for index, y in zip(trend.columns, trend.fitted)]
    tip = f"fitted depth trend: {trend.change_decades:+.2f} decades from the output side to the input side"
    return group([element("title", tip), polyline(points, class_="trend")], class_="trend-line")


def activation_chart(layers: list[dict[str, Any]], findings: list[dict[str, Any]]) -> Markup:
    """Per layer: the share of outputs exactly zero (dead), the share saturated, and the output RMS (log)."""
    columns, named = Columns.fitting(len(layers)), flags(findings)
    zero = LinearScale(0.0, 1.0, top=24, bottom=94)
    saturated = LinearScale(0.0, 1.0, top=128, bottom=198)
    rms = LogScale.spanning([output_rms(layer) for layer in layers], top=232, bottom=312)
    marks = []
    for index, layer in enumerate(layers):
        activation, x = layer.get("activation") or {}, columns.x(index)
        tip = (f"{layer['depth']}: {layer['name']} ({layer['kind']})\nzero outputs {figure(activation.get('zero_fraction'))}"
               f"\nsaturated {figure(activation.get('saturated_fraction'))}\noutput RMS {figure(output_rms(layer))}")
        children = [element("title", tip),
                    _bar(x, columns.step, zero, activation.get("zero_fraction"), "dead"),
                    _bar(x, columns.step, saturated, activation.get("saturated_fraction"), "saturated")]
        if output_rms(layer) is not None:
            children.append(_point(x, rms, output_rms(layer), "output-rms", circle=True))
        marks.append(group(children, **_layer_attributes(layer, named.get(layer["name"], []))))
    return svg(columns.left + columns.width + RIGHT, rms.bottom + BOTTOM, [
        _flag_columns(layers, named, columns, zero.top, rms.bottom),
        panel_title("share of outputs exactly zero (dead units)", columns, zero.top - 8),
        linear_axis(zero, columns, "", (0.0, 0.5, 1.0)),
        panel_title("share of outputs saturated (Sigmoid and Tanh layers)", columns, saturated.top - 8),
        linear_axis(saturated, columns, "", (0.0, 0.5, 1.0)),
        panel_title("output RMS, log axis", columns, rms.top - 8),
        log_axis(rms, columns),
        group(marks, class_="marks"),
        depth_axis(columns, rms.bottom),
    ], label="Activation health per layer", id="activation-health", class_="chart")


def output_rms(layer: dict[str, Any]) -> float | None:
    """The root mean square of a layer's output: sqrt(mean^2 + std^2)."""
    activation = layer.get("activation") or {}
    mean, std = activation.get("mean"), activation.get("std")
    return None if mean is None or std is None else math.hypot(mean, std)


def _bar(x: float, step: float, scale: LinearScale, value: float | None, css_class: str) -> Markup:
    if value is None:
        return Markup("")
    top = min(scale.y(value), scale.bottom - (1 if value > 0 else 0))
    return element("rect", x=x - step * 0.35, y=top, width=step * 0.7, height=scale.bottom - top,
                   class_=f"bar {css_class}")


def grad_to_weight_chart(layers: list[dict[str, Any]], findings: list[dict[str, Any]],
                         learning_rate: float | None) -> Markup:
    """||dL/dW|| / ||W|| of every layer with parameters on a log axis, with the 1e-3 / lr reference line."""
    rate = learning_rate or DEFAULT_LEARNING_RATE
    reference = UPDATE_TO_WEIGHT / rate
    columns, named = Columns.fitting(len(layers)), flags(findings)
    ratios = [layer["grad_to_weight"] if layer["parameters"] > 0 else None for layer in layers]
    scale = LogScale.spanning([*ratios, reference], top=30, bottom=190)
    marks = []
    for index, (layer, ratio) in enumerate(zip(layers, ratios)):
        tip = f"{layer['depth']}: {layer['name']} ({layer['kind']})\n\u2016dL/dW\u2016 / \u2016W\u2016 = {figure(ratio)}"
        point = _point(columns.x(index), scale, ratio, "grad-to-weight", circle=True) if ratio is not None else ""
        marks.append(group([element("title", tip), Markup(point)],
                           **_layer_attributes(layer, named.get(layer["name"], []))))
    y = scale.y(reference)
    return svg(columns.left + columns.width + RIGHT, scale.bottom + BOTTOM, [
        _flag_columns(layers, named, columns, scale.top, scale.bottom),
        log_axis(scale, columns, "\u2016dL/dW\u2016 / \u2016W\u2016"),
        element("line", x1=columns.left, x2=columns.left + columns.width, y1=y, y2=y, class_="reference"),
        group(marks, class_="marks"),
        depth_axis(columns, scale.bottom),
        legend([("grad-to-weight", "\u2016dL/dW\u2016 / \u2016W\u2016 (layers with parameters)"),
                ("reference", f"1e-3 / lr, lr = {rate:g}: a step changing the weights by 1e-3")], columns.left, 14),
    ], label="Gradient-to-weight ratio per layer on a log axis", id="grad-to-weight", class_="chart")


def loss_curves(training: dict[str, Any] | None) -> Markup:
    """The training comparison of a verified fix: the original's and the patched copy's loss per step."""
    if not training or not training.get("loss_original"):
        return Markup("")
    series = [("original", training["loss_original"]), ("patched", training.get("loss_patched") or [])]
    finite = [v for _, values in series for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Markup("")
    columns = Columns(max(len(values) for _, values in series), step=10, left=8)
    scale = LinearScale(min(finite), max(finite), top=18, bottom=78)
    lines = [polyline([(columns.x(i), scale.y(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v)],
                      class_=f"loss {name}") for name, values in series]
    return svg(columns.left + columns.width + 8, 84, [
        *lines, legend([("loss-original", "original"), ("loss-patched", "patched")], columns.left, 10),
        element("title", f"loss over {training.get('steps')} training steps: original against patched"),
    ], label="Loss over the training steps, original and patched", class_="chart loss-curves")
