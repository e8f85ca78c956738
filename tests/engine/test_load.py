"""Loading: layer names, kinds and depth order, input specs, parameters that get gradients."""

from __future__ import annotations

import warnings

import onnx
import pytest
import torch

from tests.support.networks import cnn_bn, export_onnx, mlp, save_torchscript, token_network
from worker.engine.formats import load_network


def _summary(network):
    return [(layer.name, layer.kind, layer.depth) for layer in network.layers]


@pytest.mark.parametrize("opset", [11, 17])
def test_onnx_mlp_layers_are_gemm_nodes_in_order(tmp_path, opset):
    path = export_onnx(mlp(), torch.randn(2, 6), tmp_path / "mlp.onnx", opset=opset, dynamic={0: "b"})
    network = load_network(path)
    assert _summary(network) == [("/0/Gemm", "Gemm", 0), ("/2/Gemm", "Gemm", 1), ("/4/Gemm", "Gemm", 2)]
    assert network.inputs[0].name == "x" and network.inputs[0].dims == [None, 6]
    assert network.inputs[0].dtype == torch.float32


def test_onnx_unnamed_nodes_get_stable_names(tmp_path):
    path = export_onnx(mlp(), torch.randn(2, 6), tmp_path / "mlp.onnx")
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        node.name = ""
    onnx.save(proto, str(path))
    assert [layer.name for layer in load_network(path).layers] == ["Gemm_0", "Gemm_2", "Gemm_4"]


def test_onnx_parameters_the_exporter_stored_once_for_being_equal_stay_one_per_layer(tmp_path):
    # A fresh network's LayerNorm scales are all ones and its biases all zeros: the legacy exporter keeps one of
    # each and names the rest as Identity nodes of it.
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 8),
                                  torch.nn.LayerNorm(8), torch.nn.Linear(8, 2)).eval()
    path = export_onnx(network, torch.randn(2, 8), tmp_path / "norms.onnx", opset=17)
    assert any(n.op_type == "Identity" for n in onnx.load(str(path)).graph.node)

    loaded = load_network(path)

    norms = [layer for layer in loaded.layers if layer.kind == "LayerNormalization"]
    assert [len(layer.parameter_names) for layer in norms] == [2, 2]
    assert sum(p.numel() for p in loaded.module.parameters()) == sum(p.numel() for p in network.parameters())


def test_onnx_batchnorm_kept_when_not_folded(tmp_path):
    # do_constant_folding=False routes weights through Identity nodes; they must still reach the Conv.
    path = export_onnx(cnn_bn(), torch.randn(2, 3, 8, 8), tmp_path / "cnn.onnx", do_constant_folding=False,
                       training=torch.onnx.TrainingMode.PRESERVE)
    network = load_network(path)
    assert [layer.kind for layer in network.layers] == ["Conv", "BatchNormalization", "Gemm"]
    assert network.op_counts.get("batch_norm") == 1


def test_onnx_embedding_table_becomes_a_parameter_of_the_gather_layer(tmp_path):
    path = export_onnx(token_network(), torch.randint(0, 50, (2, 5)), tmp_path / "tok.onnx", name="tokens",
                       dynamic={0: "b"})
    network = load_network(path)
    assert [layer.kind for layer in network.layers] == ["Gather", "LSTM", "Gemm"]
    assert network.inputs[0].dtype == torch.int64 and network.inputs[0].vocab == 50
    gather = dict(network.module.named_parameters())[network.layers[0].parameter_names[0]]
    assert gather.shape == (50, 8)


def test_dynamo_export_loads_with_its_node_names(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(mlp(), (torch.randn(2, 6),), dynamo=True, input_names=["x"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save(str(tmp_path / "dyn.onnx"))
    network = load_network(tmp_path / "dyn.onnx")
    assert [layer.kind for layer in network.layers] == ["Gemm", "Gemm", "Gemm"]
    assert network.inputs[0].dims == [None, 6]


def test_torchscript_layers_by_module_path_and_original_name(tmp_path):
    network = load_network(save_torchscript(token_network(), tmp_path / "tok.pt"))
    assert _summary(network) == [("emb", "Embedding", 0), ("lstm", "LSTM", 1), ("fc", "Linear", 2)]
    assert network.inputs[0].name == "tokens" and network.inputs[0].dims is None
    assert network.inputs[0].dtype == torch.int64 and network.inputs[0].vocab == 50


def test_torchscript_root_parameters_form_a_layer_named_by_type(tmp_path):
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.fc = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * self.scale

    network = load_network(save_torchscript(Scaled(), tmp_path / "s.pt"))
    assert _summary(network) == [("Scaled", "Scaled", 0), ("fc", "Linear", 1)]


def test_traced_torchscript_counts_activations(tmp_path):
    path = save_torchscript(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh()), tmp_path / "t.pt",
                            example=torch.randn(2, 4))
    network = load_network(path)
    assert network.op_counts == {"tanh": 1}
    assert [spec.name for spec in network.inputs] == ["input"]
