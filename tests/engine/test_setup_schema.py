"""What the engine writes into a report keeps to gradaudit.schema, in both formats and with training on."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gradaudit.options import AuditOptions
from gradaudit.schema import BATCH_ROW_FIELDS, Setup, Training
from worker.engine.audit import audit_network


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("network_format", ["onnx", "torchscript"])
def test_every_setup_key_and_batch_row_field_is_declared(tmp_path, network_format):
    x = torch.randn(2, 4)
    if network_format == "onnx":
        path = tmp_path / "n.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_network(), (x,), str(path), dynamo=False)
        options = AuditOptions(train_steps=2)
    else:
        path = tmp_path / "n.pt"
        torch.jit.trace(_network(), x).save(str(path))
        options = AuditOptions(train_steps=2, input_shapes={"input": [2, 4]})
    result = audit_network(path, options=options, device="cpu")
    assert set(result.setup) <= set(Setup.__annotations__)
    assert set(result.setup["training"]) == set(Training.__annotations__)
    rows = [row for layer in result.layers for row in layer.batch_rows]
    assert rows and all(set(row) == set(BATCH_ROW_FIELDS) for row in rows)
