"""The same network as a .pt2 archive and as a TorchScript trace gets the same layers and the same finding codes."""

from __future__ import annotations

import pytest
import torch

from gradaudit.options import AuditOptions
from suites import networks
from tests.engine.pt2.conftest import save_pt2
from tests.support.networks import save_torchscript
from worker.engine.audit import audit_network

CASES = {
    "deep_sigmoid": (lambda: networks.mlp(12, 32, "sigmoid", init=torch.nn.init.xavier_normal_), {"vanishing_gradient"}),
    "healthy_relu": (lambda: networks.mlp(8, 32, "relu", init=networks.gaussian(2.0)), set()),
}


def _codes(result) -> set[str]:
    return {f["code"] for f in result.findings if f["severity"] in ("warning", "critical")}


@pytest.mark.parametrize("name", CASES)
def test_pt2_and_torchscript_agree(name, tmp_path):
    build, expected = CASES[name]
    torch.manual_seed(0)
    network, example = build().eval(), torch.randn(32, 32)
    pt2 = audit_network(save_pt2(network, tmp_path / "n.pt2", example), options=AuditOptions(), device="cpu")
    script = audit_network(save_torchscript(network, tmp_path / "n.pt", example),
                           options=AuditOptions(input_shapes={"input": [32, 32]}), device="cpu")
    assert [layer.name for layer in pt2.layers] == [layer.name for layer in script.layers]
    assert _codes(pt2) == _codes(script) and expected <= _codes(pt2)
    assert {f["code"] for f in pt2.findings} == {f["code"] for f in script.findings}
    assert pt2.verdict == script.verdict
