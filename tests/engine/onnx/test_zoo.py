"""Real model-zoo networks from the onnx wheel audit end to end (the rest of the nine: bench/onnx_zoo.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network

pytestmark = pytest.mark.slow

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_light_zoo_network_with_constant_built_weights_audits(name):
    result = audit_network(LIGHT / f"light_{name}.onnx", options=AuditOptions(batch_size=1, batches=1), device="cpu")
    assert result.network["parameters"] > 1_000_000 and result.network["layers"] > 50
    assert result.setup["onnxruntime_max_abs_diff"] <= result.setup["onnxruntime_tolerance"]
    assert result.setup["opset"] is not None
