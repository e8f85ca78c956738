"""worker.engine.parameter_stats through whole audits: a parameter several layers read (a shared layer's calls,
a tied output projection) is counted once in the network's total in every format, and never crashes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from gradaudit.options import AuditOptions
from suites.networks import AlbertLike, TiedEmbedding, TransformerClassifier
from tests.support.networks import export_onnx, save_torchscript
from worker.engine.audit import audit_network

FORMATS = ["torchscript", "onnx_legacy", "onnx_dynamo"]
_IDS = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(0))


def _network(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return (AlbertLike(calls=8) if name == "albert" else TiedEmbedding()).eval()


def _saved(network: torch.nn.Module, route: str, folder: Path) -> Path:
    if route == "torchscript":
        return save_torchscript(network, folder / "net.pt", _IDS)
    if route == "onnx_legacy":
        return export_onnx(network, _IDS, folder / "net.onnx", name="ids", opset=17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (_IDS,), str(folder / "dyn.onnx"), input_names=["ids"])
    return folder / "dyn.onnx"


@pytest.fixture(scope="module", params=[(n, f) for n in ("albert", "tied") for f in FORMATS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def audited(request, tmp_path_factory):
    """(network, its audit) for each network and export route."""
    name, route = request.param
    network, folder = _network(name), tmp_path_factory.mktemp(f"{name}-{route}")
    path = _saved(network, route, folder)
    options = AuditOptions(input_shapes={"ids": list(_IDS.shape)} if route == "torchscript" else {})
    return network, audit_network(path, options=options, device="cpu", external_data_dir=folder)


def test_parameters_are_counted_once_in_every_format(audited):
    network, result = audited
    assert result.network["parameters"] == sum(p.numel() for p in network.parameters())


def test_every_parameter_is_reported_by_some_layer(audited):
    _, result = audited
    assert sum(layer.parameters for layer in result.layers) >= result.network["parameters"]
    assert all(layer.grad_norm > 0 for layer in result.layers if layer.parameters)


def test_a_shared_layer_at_default_initialisation_is_not_exploding(audited):
    _, result = audited
    assert "exploding_gradient" not in {finding["code"] for finding in result.findings}


def test_layers_deep_copied_from_one_are_counted_each(tmp_path):
    """nn.TransformerEncoder deep-copies its layer: equal values at initialisation, separate parameters."""
    torch.manual_seed(0)
    network = TransformerClassifier(2, 16).eval()
    path = export_onnx(network, torch.randn(2, 5, 16), tmp_path / "encoder.onnx", opset=17)
    result = audit_network(path, options=AuditOptions(), device="cpu", external_data_dir=tmp_path)
    assert result.network["parameters"] == sum(p.numel() for p in network.parameters())
