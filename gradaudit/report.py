"""The report document (contract v1), built the same way from database rows and from the engine.

Each layer keeps its v1 fields and gains `output_grad` and `activation`: its output's statistics aggregated
over the probe batches, each with the per-batch values under `batches`; null where the output was not seen.
"""

from __future__ import annotations

import math
from typing import Any

REPORT_VERSION = 1


def build_report(
    *,
    audit_id: str | None,
    network: dict[str, Any],
    setup: dict[str, Any],
    layers: list[dict[str, Any]],
    findings: list[dict[str, Any]],
    verdict: str,
) -> dict[str, Any]:
    """The JSON report of a succeeded audit."""
    return {
        "id": audit_id,
        "status": "succeeded",
        "report_version": REPORT_VERSION,
        "network": network,
        "setup": setup,
        "layers": [layer_json(layer) for layer in layers],
        "findings": findings,
        "verdict": verdict,
    }


def layer_json(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer of the report from its v1 fields plus `batch_rows`, its per-batch rows (absent: not measured)."""
    fields = {key: value for key, value in layer.items() if key != "batch_rows"}
    batch_rows = layer.get("batch_rows") or []
    return {**fields, "output_grad": _output_grad(batch_rows), "activation": _activation(batch_rows)}


def _output_grad(batch_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Norm as the root mean square of per-batch norms, mean |g| averaged, max |g| the largest, counts summed."""
    reached = [row for row in batch_rows if row.get("output_grad_zero_count") is not None]
    if not reached:
        return None
    zeros = sum(row["output_grad_zero_count"] for row in reached)
    return {
        "norm": _rms([row["output_grad_norm"] for row in reached]),
        "mean_abs": _mean([row["output_grad_mean_abs"] for row in reached]),
        "max_abs": _max([row["output_grad_max_abs"] for row in reached]),
        "zero_count": zeros,
        "zero_fraction": zeros / sum(row["numel"] for row in reached),
        "nonfinite": sum(row["output_grad_nonfinite"] for row in reached),
        "batches": [_batch(row, "output_grad_") for row in reached],
    }


def _activation(batch_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean, std (pooled), zero and saturated fractions over every element of every batch."""
    if not batch_rows:
        return None
    mean = _weighted(batch_rows, "activation_mean")
    squares = _weighted(batch_rows, "activation_std", lambda row: row["activation_std"] ** 2 + row["activation_mean"] ** 2)
    return {
        "mean": mean,
        "std": math.sqrt(max(squares - mean ** 2, 0.0)) if None not in (mean, squares) else None,
        "zero_fraction": _weighted(batch_rows, "activation_zero_fraction"),
        "saturated_fraction": _weighted(batch_rows, "activation_saturated_fraction"),
        "batches": [_batch(row, "activation_") for row in batch_rows],
    }


def _batch(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    values = {key[len(prefix):]: value for key, value in row.items() if key.startswith(prefix)}
    return {"batch": row["batch"], "seed": row["seed"], "numel": row["numel"], **values}


def _weighted(batch_rows: list[dict[str, Any]], key: str, value=None) -> float | None:
    """The element-weighted mean of a per-batch value; None if any batch lacks it (not finite, not measured)."""
    if any(row.get(key) is None or (value and row.get("activation_mean") is None) for row in batch_rows):
        return None
    pick = value or (lambda row: row[key])
    return sum(row["numel"] * pick(row) for row in batch_rows) / sum(row["numel"] for row in batch_rows)


def _rms(values: list[float | None]) -> float | None:
    return math.sqrt(sum(v * v for v in values) / len(values)) if None not in values else None


def _mean(values: list[float | None]) -> float | None:
    return sum(values) / len(values) if None not in values else None


def _max(values: list[float | None]) -> float | None:
    return max(values) if None not in values else None


def render_text(report: dict[str, Any]) -> str:
    """A terminal-friendly rendering: verdict, findings with their fixes, then the layer table."""
    network = report["network"]
    lines = [
        f"verdict: {report['verdict'].upper()}",
        f"network: {network['format']}, {network['parameters']:,} parameters in {network['layers']} layers",
        f"setup:   {_setup_line(report['setup'])}",
        "",
    ]
    lines += _findings_lines(report["findings"]) + [""] + _layer_lines(report["layers"])
    return "\n".join(lines)


def _setup_line(setup: dict[str, Any]) -> str:
    keys = ("device", "batch_size", "seed", "loss")
    return ", ".join(f"{key}={setup[key]}" for key in keys if key in setup)


def _findings_lines(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return ["no findings"]
    lines = []
    for finding in findings:
        lines.append(f"[{finding['severity']}] {finding['code']}: {finding['title']}")
        lines += [f"    fix ({rec['code']}): {rec['text']}" for rec in finding.get("recommendations", [])]
    return lines


def _layer_lines(layers: list[dict[str, Any]]) -> list[str]:
    header = f"{'depth':>5}  {'layer':<32} {'kind':<20} {'params':>10} {'grad_norm':>11} {'grad/weight':>11}"
    rows = [
        f"{layer['depth']:>5}  {layer['name'][:32]:<32} {layer['kind'][:20]:<20} {layer['parameters']:>10}"
        f" {layer['grad_norm']:>11.3e} {layer['grad_to_weight']:>11.3e}"
        for layer in layers
    ]
    return [header, *rows]
