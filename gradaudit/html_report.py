"""The report as one self-contained HTML page: verdict, findings with their fixes, charts, setup and the layer table.

Rendered from the report document (gradaudit/report.py) alone, so the API and the CLI give the same page. Charts
are inline SVG drawn here (gradaudit/report_charts.py); the page loads nothing, runs no script and escapes every
string the uploader chose (layer names, file names) through Jinja2's autoescape.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from gradaudit import report_charts
from gradaudit.report_charts import DASH, figure, flags
from gradaudit.thresholds import CRITICAL_DECADES, WARNING_DECADES

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["figure"] = figure

# The setup rows shown first, in this order, with their labels; the rest follow under "everything else".
SETUP_ROWS = {
    "device": "device", "batch_size": "batch size", "batches": "probe batches", "seeds": "seeds", "seed": "seed",
    "loss": "loss", "loss_value": "loss value (mean over batches)", "input_shapes": "input shapes",
    "inputs": "inputs", "mode": "mode", "normalization_mode": "BatchNorm statistics",
    "time_limit_s": "time limit (s)", "memory_limit_mb": "memory limit (MB)", "opset": "ONNX opset",
}


def render_html(report: dict[str, Any]) -> str:
    """The report document as a self-contained HTML page."""
    layers = sorted(report["layers"], key=lambda layer: layer["depth"])
    findings, setup = report["findings"], report.get("setup") or {}
    return TEMPLATES.get_template("report.html").render(
        report=report, verdict=report["verdict"], network=report.get("network") or {},
        findings=[_finding(finding, report.get("id")) for finding in findings],
        combined=_combined(report.get("combined"), report.get("id")),
        setup_rows=setup_rows(setup), setup_rest={k: v for k, v in setup.items() if k not in SETUP_ROWS},
        parity=parity(setup), layers=layer_rows(layers, findings), trend=_trend_caption(layers, findings),
        flow_chart=report_charts.gradient_flow_chart(layers, findings),
        activation_chart=report_charts.activation_chart(layers, findings),
        ratio_chart=report_charts.grad_to_weight_chart(layers, findings, _learning_rate(setup)),
        warning_decades=WARNING_DECADES, critical_decades=CRITICAL_DECADES,
    )


def _finding(finding: dict[str, Any], audit_id: str | None) -> dict[str, Any]:
    # Audits stored by earlier versions may lack fields added since: the page shows what there is.
    return {"layers": [], "evidence": {}, "confidence": None, **finding,
            "recommendations": [_recommendation(recommendation, finding["code"], audit_id)
                                for recommendation in finding.get("recommendations") or []]}


def _recommendation(recommendation: dict[str, Any], finding_code: str, audit_id: str | None) -> dict[str, Any]:
    verification = recommendation.get("verification") or {}
    return {"text": "", **recommendation, "verification": verification,
            "curves": report_charts.loss_curves(verification.get("training")),
            "download": _download(recommendation.get("network"), audit_id, recommendation["code"], finding_code)}


def _combined(combined: dict[str, Any] | None, audit_id: str | None) -> dict[str, Any] | None:
    if not combined:
        return None
    verification = combined.get("verification") or {}
    return {**combined, "verification": verification,
            "curves": report_charts.loss_curves(verification.get("training")),
            "download": _download(combined.get("network"), audit_id, "combined", None)}


def _download(network: dict[str, Any] | None, audit_id: str | None, code: str, finding: str | None) -> dict | None:
    """Where the patched network is: the service's download URL, or the file `gradaudit audit --write-fixes` wrote."""
    if not network:
        return None
    if audit_id and network.get("sha256"):
        query = f"?finding={quote(finding, safe='')}" if finding else ""
        return {"url": f"/v1/audits/{quote(audit_id, safe='')}/remedies/{quote(code, safe='')}/network{query}",
                "size": network.get("size")}
    return {"file": network.get("file"), "size": network.get("size")}


def setup_rows(setup: dict[str, Any]) -> list[tuple[str, Any]]:
    """The setup's main rows, labelled, in SETUP_ROWS order."""
    return [(label, setup[key]) for key, label in SETUP_ROWS.items() if key in setup]


def parity(setup: dict[str, Any]) -> str:
    """How the converted network agreed with onnxruntime, in words."""
    if setup.get("onnxruntime_error"):
        return f"not checked: {setup['onnxruntime_error']}"
    if setup.get("onnxruntime_max_abs_diff") is not None:
        return (f"max |difference| {figure(setup['onnxruntime_max_abs_diff'])} on the first batch "
                f"(tolerance {figure(setup.get('onnxruntime_tolerance'))})")
    if setup.get("onnxruntime_parity"):
        return str(setup["onnxruntime_parity"])
    return f"{DASH} (only ONNX uploads are run by onnxruntime)"


def layer_rows(layers: list[dict[str, Any]], findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The layer table: each statistic formatted, an en dash where a layer has no such value (no parameters, an
    output not observed)."""
    named = flags(findings)
    return [_layer_row(layer, [finding["code"] for finding in named.get(layer["name"], [])]) for layer in layers]


def _layer_row(layer: dict[str, Any], codes: list[str]) -> dict[str, Any]:
    owns = layer["parameters"] > 0
    activation = layer.get("activation") or {}
    return {
        "depth": layer["depth"], "name": layer["name"], "kind": layer["kind"], "findings": codes,
        "parameters": f"{layer['parameters']:,}" if owns else DASH,
        "weight_norm": figure(layer["weight_norm"]) if owns else DASH,
        "grad_norm": figure(layer["grad_norm"]) if owns else DASH,
        "grad_to_weight": figure(layer["grad_to_weight"]) if owns else DASH,
        "output_grad": figure((layer.get("output_grad") or {}).get("norm")),
        "zero_fraction": _share(activation.get("zero_fraction")),
        "saturated_fraction": _share(activation.get("saturated_fraction")),
        "output_rms": figure(report_charts.output_rms(layer)),
    }


def _share(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"


def _learning_rate(setup: dict[str, Any]) -> float | None:
    return (setup.get("training") or {}).get("learning_rate")


def _trend_caption(layers: list[dict[str, Any]], findings: list[dict[str, Any]]) -> str:
    """What the chart's trend line says, and where the diagnosis judged a different measure."""
    trend = report_charts.depth_trend(layers)
    if trend is None:
        return "Too few weight layers with a measured output gradient to fit a depth trend."
    said = (f"The fitted trend changes {trend.change_decades:+.2f} decades from the output side to the input side "
            f"(least squares of log10 \u2016dL/d output\u2016 over the {len(trend.columns)} weight layers below "
            "the output layer, every probe batch a point).")
    judged = [finding for finding in findings if finding["code"] in ("vanishing_gradient", "exploding_gradient")]
    for finding in judged:
        evidence = finding.get("evidence") or {}
        gradient = evidence.get("gradient", evidence) or {}
        change = gradient.get("fitted_change_decades")
        if isinstance(change, (int, float)) and math.isfinite(change) and "per entry" in str(gradient.get("metric")):
            said += (f" The diagnosis judged the RMS per entry, which changes less here ({change:+.2f} decades): "
                     "the difference is tensor size, not gradient health.")
    return said
