"""Reports as gradaudit/report.py builds them, from a few numbers per layer: for tests of what reads reports (the
comparison, the CI outputs) without running an audit."""

from __future__ import annotations

from typing import Any

from gradaudit.report import build_report

NETWORK = {"format": "onnx", "sha256": "cd" * 32, "parameters": 544, "layers": 3}
SETUP = {"device": "cpu", "batch_size": 8, "seed": 0, "loss": "cross_entropy"}


def batch_row(batch: int, *, output_grad_norm: float | None, zero_fraction: float | None,
              saturated_fraction: float | None) -> dict[str, Any]:
    """One probe batch of a layer's output, as the engine records it."""
    return {"batch": batch, "seed": batch, "numel": 128, "activation_mean": 0.1, "activation_std": 1.0,
            "activation_zero_fraction": zero_fraction, "activation_saturated_fraction": saturated_fraction,
            "output_grad_norm": output_grad_norm, "output_grad_mean_abs": 0.0 if output_grad_norm is None else 1e-3,
            "output_grad_max_abs": output_grad_norm, "output_grad_zero_count": 0, "output_grad_zero_fraction": 0.0,
            "output_grad_nonfinite": 0}


def layer(name: str, depth: int, *, kind: str = "Gemm", parameters: int = 272, grad_norm: float = 1e-3,
          output_grad_norm: float | None = 1e-3, zero_fraction: float | None = 0.0,
          saturated_fraction: float | None = None) -> dict[str, Any]:
    """A layer with the same output on each of its two probe batches; no parameters: zero weight statistics."""
    rows = [batch_row(batch, output_grad_norm=output_grad_norm, zero_fraction=zero_fraction,
                      saturated_fraction=saturated_fraction) for batch in (0, 1)]
    weighted = parameters > 0
    return {"name": name, "kind": kind, "depth": depth, "parameters": parameters,
            "weight_norm": 2.0 if weighted else 0.0, "grad_norm": grad_norm if weighted else 0.0,
            "grad_mean_abs": grad_norm / 10 if weighted else 0.0, "grad_std": 0.0, "grad_max_abs": 0.0,
            "grad_zero_fraction": 0.0, "grad_nonfinite": 0, "grad_to_weight": grad_norm / 2.0 if weighted else 0.0,
            "batch_rows": rows}


def recommendation(code: str, text: str, status: str | None = None) -> dict[str, Any]:
    """A recommendation, verified with that status where one is given."""
    entry = {"code": code, "text": text}
    if status:
        entry["verification"] = {"status": status, "metric": "fitted_change_decades", "before": -6.0, "after": -0.5,
                                 "findings_after": [], "training": None, "seconds": 0.5}
    return entry


def finding(code: str, severity: str, *, layers: tuple[str, ...] = ("/0/Gemm",), title: str | None = None,
            evidence: dict[str, Any] | None = None, recommendations: list[dict[str, Any]] | None = None) -> dict:
    """A finding as the diagnosis writes it."""
    return {"code": code, "severity": severity, "title": title or f"{code} seen", "layers": list(layers),
            "evidence": evidence if evidence is not None else {"slope_decades_per_layer": 0.85},
            "confidence": 0.9,
            "recommendations": recommendations if recommendations is not None else [
                recommendation("use_relu", f"replace the sigmoid to fix {code}")]}


def report(layers: list[dict[str, Any]], findings: list[dict[str, Any]], *, audit_id: str | None = "a1",
           verdict: str | None = None) -> dict[str, Any]:
    """The report of these layers and findings; the verdict is the worst severity unless given."""
    worst = max((("info", "warning", "critical").index(f["severity"]) for f in findings), default=0)
    verdict = verdict or ("healthy", "warning", "critical")[worst]
    return build_report(audit_id=audit_id, network=NETWORK, setup=SETUP, layers=layers, findings=findings,
                        verdict=verdict)


# One network's layers with a ReLU, and again with a sigmoid in its place whose gradient vanishes toward the input:
# the version that regressed against its baseline.
RELU_LAYERS = [layer("/0/Gemm", 0, grad_norm=1e-4, output_grad_norm=7e-5),
               layer("/1/Relu", 1, kind="Relu", parameters=0, output_grad_norm=1e-4, zero_fraction=0.5),
               layer("/2/Gemm", 2, grad_norm=1e-2, output_grad_norm=4e-2)]
SIGMOID_LAYERS = [layer("/0/Gemm", 0, grad_norm=1e-7, output_grad_norm=5e-8),
                  layer("/1/Sigmoid", 1, kind="Sigmoid", parameters=0, output_grad_norm=2e-7, saturated_fraction=0.0),
                  layer("/2/Gemm", 2, grad_norm=1e-2, output_grad_norm=4e-2)]
