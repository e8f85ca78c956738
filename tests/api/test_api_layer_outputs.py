"""The report and /layers carry each layer's output statistics, aggregated from its stored batch rows."""

from __future__ import annotations

import math

import pytest

from models import audits as audit_rows
from tests.support.api_rows import LAYERS, claim


def batch(index: int, *, norm: float, mean: float, std: float, zeros: int) -> dict:
    """One stored batch row of a ReLU layer with 100 outputs."""
    return {"batch": index, "seed": index, "numel": 100, "activation_mean": mean, "activation_std": std,
            "activation_zero_fraction": 0.5, "activation_saturated_fraction": None, "output_grad_norm": norm,
            "output_grad_mean_abs": norm / 10, "output_grad_max_abs": norm * 2, "output_grad_zero_count": zeros,
            "output_grad_zero_fraction": zeros / 100, "output_grad_nonfinite": 0}


RELU = {**LAYERS[0], "name": "1", "kind": "ReLU", "depth": 1, "parameters": 0,
        "batch_rows": [batch(0, norm=3.0, mean=1.0, std=1.0, zeros=50), batch(1, norm=4.0, mean=3.0, std=1.0, zeros=30)]}


@pytest.fixture
def audit_id(services, new_audit) -> str:
    """A succeeded audit whose one layer has two batch rows."""
    audit_id = new_audit()
    claim(services, audit_id)
    result = {"network": {"format": "onnx", "parameters": 0, "layers": 1}, "setup": {}, "findings": [],
              "verdict": "healthy"}
    with services.sessions() as db_session:
        assert audit_rows.succeed_audit(db_session=db_session, audit_id=audit_id, worker_id="worker-1",
                                        result=result, layers=[RELU])
    return audit_id


def test_report_layer_has_output_grad_and_activation(client, audit_id):
    layer = client.get(f"/v1/audits/{audit_id}/report").get_json()["layers"][0]
    assert {k: layer[k] for k in ("name", "kind", "parameters", "grad_norm")} == {
        "name": "1", "kind": "ReLU", "parameters": 0, "grad_norm": LAYERS[0]["grad_norm"]}
    grad = layer["output_grad"]
    assert grad["norm"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert (grad["mean_abs"], grad["max_abs"], grad["zero_count"], grad["nonfinite"]) == (
        pytest.approx(0.35), 8.0, 80, 0)
    assert grad["zero_fraction"] == pytest.approx(0.4)
    assert [b["norm"] for b in grad["batches"]] == [3.0, 4.0] and grad["batches"][0]["seed"] == 0
    activation = layer["activation"]
    assert activation["mean"] == pytest.approx(2.0)
    assert activation["std"] == pytest.approx(math.sqrt(2.0))  # pooled: within-batch 1, between-batch 1
    assert activation["zero_fraction"] == pytest.approx(0.5) and activation["saturated_fraction"] is None
    assert [b["mean"] for b in activation["batches"]] == [1.0, 3.0]


def test_layers_endpoint_has_the_same_layer(client, audit_id):
    report = client.get(f"/v1/audits/{audit_id}/report").get_json()
    assert client.get(f"/v1/audits/{audit_id}/layers").get_json()["layers"] == report["layers"]
