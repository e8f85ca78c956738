"""Reading an ONNX file's graph with its weights left in the file, then reading them straight into tensors; and
writing a network one initializer at a time."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from gradaudit.errors import AuditError
from tests.support.networks import export_onnx
from worker.engine.onnx import load_network as load_onnx
from worker.engine.onnx.external_data import external_tensors, load_into_proto, locate_external_data, read_array
from worker.engine.onnx.prepare import prepare
from worker.engine.onnx.wire import SMALLEST_LEFT_IN_FILE, read_without_weights, write_model


def _wide_cnn() -> nn.Sequential:
    """Conv and Linear weights above SMALLEST_LEFT_IN_FILE, their biases below it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 40)).eval()


@pytest.fixture
def wide_cnn_onnx(tmp_path):
    return export_onnx(_wide_cnn(), torch.randn(2, 3, 4, 4), tmp_path / "wide.onnx")


def test_large_initializers_refer_to_their_bytes_and_small_ones_stay_in_the_graph(wide_cnn_onnx):
    proto = read_without_weights(wide_cnn_onnx)

    external = {t.name for t in external_tensors(proto.graph)}
    sizes = {t.name: t for t in onnx.load(str(wide_cnn_onnx)).graph.initializer}
    assert external == {name for name, t in sizes.items() if len(t.raw_data) >= SMALLEST_LEFT_IN_FILE}
    assert len(external) == 3  # the Conv weight and both Linear weights
    assert all(not t.raw_data for t in proto.graph.initializer if t.name in external)


def test_reading_the_referenced_bytes_gives_back_exactly_what_onnx_load_reads(wide_cnn_onnx):
    proto = read_without_weights(wide_cnn_onnx)
    locate_external_data(proto, None, own_file=wide_cnn_onnx)
    for tensor in list(external_tensors(proto.graph)):
        load_into_proto(tensor)

    assert proto == onnx.load(str(wide_cnn_onnx))


def test_conv_and_gemm_weights_go_from_the_file_to_tensors_without_entering_the_graph(wide_cnn_onnx):
    proto = read_without_weights(wide_cnn_onnx)
    locate_external_data(proto, None, own_file=wide_cnn_onnx)

    prepared = prepare(proto, take=True)

    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(wide_cnn_onnx)).graph.initializer}
    left = {t.name for t in prepared.proto.graph.initializer}
    assert len(prepared.weights) == 6 and not left & set(prepared.weights)  # 3 weights, 3 biases
    for name, tensor in prepared.weights.items():
        expected = weights[name] if tensor.shape == weights[name].shape else weights[name].T
        np.testing.assert_array_equal(tensor.numpy(), expected)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in prepared.proto.graph.initializer)


def test_a_network_read_this_way_computes_what_the_exported_one_does(wide_cnn_onnx):
    network = load_onnx(wide_cnn_onnx)
    x = torch.randn(2, 3, 4, 4)

    with torch.no_grad():
        torch.testing.assert_close(network.module(x), _wide_cnn()(x), rtol=1e-5, atol=1e-6)
    assert all(p.requires_grad for p in network.module.parameters())


def test_a_truncated_file_is_invalid_onnx(wide_cnn_onnx):
    wide_cnn_onnx.write_bytes(wide_cnn_onnx.read_bytes()[:-1000])

    with pytest.raises(AuditError) as refused:
        read_without_weights(wide_cnn_onnx)
    assert refused.value.code == "invalid_onnx" and "past the end" in refused.value.detail


def test_an_empty_file_is_invalid_onnx(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")

    with pytest.raises(AuditError) as refused:
        read_without_weights(tmp_path / "empty.onnx")
    assert refused.value.code == "invalid_onnx" and "empty" in refused.value.detail


class _Projection(nn.Module):
    """nn.Linear on a 3-D input, which every exporter writes as MatMul by the transposed weight, then Add."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner, self.outer = nn.Linear(48, 64), nn.Linear(64, 24)

    def forward(self, x):
        return self.outer(torch.relu(self.inner(x)))


def test_a_matmul_by_a_weight_matrix_and_its_bias_add_are_one_layer_with_weights_from_the_file(tmp_path):
    path = export_onnx(_Projection().eval(), torch.randn(2, 5, 48), tmp_path / "projection.onnx")
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["MatMul", "Add", "Relu", "MatMul", "Add"]

    proto = read_without_weights(path)
    locate_external_data(proto, None, own_file=path)
    prepared = prepare(proto, take=True)
    network = load_onnx(path)

    assert not {t.name for t in prepared.proto.graph.initializer}  # weights and biases all went to tensors
    shapes = [[list(network.module.get_parameter(name).shape) for name in layer.parameter_names]
              for layer in network.layers]
    assert [layer.kind for layer in network.layers] == ["MatMul", "MatMul"]
    assert shapes == [[[64, 48], [64]], [[24, 64], [24]]]  # stored (out, in), as nn.Linear stores them
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        torch.testing.assert_close(network.module(x), _Projection()(x), rtol=1e-5, atol=1e-6)


def test_a_weight_read_transposed_block_by_block_is_the_transpose(tmp_path, monkeypatch):
    path = export_onnx(_Projection().eval(), torch.randn(2, 5, 48), tmp_path / "projection.onnx")
    proto = read_without_weights(path)
    locate_external_data(proto, None, own_file=path)
    tensor = next(t for t in external_tensors(proto.graph) if list(t.dims) == [48, 64])
    monkeypatch.setattr("worker.engine.onnx.external_data._BLOCK_BYTES", 5 * 64 * 4)  # 5 rows a block, 48 rows

    transposed = read_array(tensor, transposed=True)

    np.testing.assert_array_equal(transposed, read_array(tensor).T)
    assert transposed.flags.c_contiguous


class _Embedded(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(1000, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(tokens).mean(dim=1))


def test_an_embedding_table_goes_from_the_file_to_a_parameter_without_entering_the_graph(tmp_path):
    tokens = torch.randint(0, 1000, (3, 7))
    path = export_onnx(_Embedded().eval(), tokens, tmp_path / "embedded.onnx", name="tokens")
    proto = read_without_weights(path)
    locate_external_data(proto, None, own_file=path)

    prepared = prepare(proto, take=True)

    assert "embedding.weight" in prepared.weights
    assert "embedding.weight" not in {t.name for t in prepared.proto.graph.initializer}
    network = load_onnx(path)
    assert network.module.get_parameter("_initializer_embedding_weight").shape == (1000, 32)
    with torch.no_grad():
        torch.testing.assert_close(network.module(tokens), _Embedded()(tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("external", [False, True])
def test_rows_gathered_at_constant_indices_are_folded_wherever_the_table_is_stored(tmp_path, external):
    table = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    nodes = [onnx.helper.make_node("Gather", ["table", "rows_at"], ["rows"], name="pick"),
             onnx.helper.make_node("Mul", ["x", "rows"], ["y"], name="mul")]
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([3, 7]), "rows_at")])
    path = tmp_path / "picked.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path),
              save_as_external_data=external, location="picked.bin", size_threshold=0)

    network = load_onnx(path, tmp_path if external else None)

    assert [(n, tuple(p.shape)) for n, p in network.module.named_parameters()] == [("_initializer_rows", (2, 4))]


def test_a_weight_an_unfolded_export_transposes_goes_from_the_file_to_a_parameter(tmp_path):
    path = export_onnx(_Projection().eval(), torch.randn(2, 5, 48), tmp_path / "unfolded.onnx",
                       do_constant_folding=False)
    assert "Transpose" in [n.op_type for n in onnx.load(str(path)).graph.node]
    proto = read_without_weights(path)
    locate_external_data(proto, None, own_file=path)

    prepared = prepare(proto, take=True)

    assert not {t.name for t in prepared.proto.graph.initializer}  # weights and biases all went to tensors
    assert "Transpose" not in [n.op_type for n in prepared.proto.graph.node]
    # Taken as stored, (out, in): not folded into a transposed copy under the Transpose's output name.
    assert [tuple(prepared.weights[name].shape) for name in ("inner.weight", "outer.weight")] == [(64, 48), (24, 64)]
    network = load_onnx(path)
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        torch.testing.assert_close(network.module(x), _Projection()(x), rtol=1e-5, atol=1e-6)


def test_a_network_written_one_initializer_at_a_time_reads_back_as_the_same_message(tmp_path):
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).eval()
    proto = onnx.load(export_onnx(network, torch.randn(2, 64), tmp_path / "net.onnx"))
    proto.metadata_props.add(key="after", value="the graph field")  # a model field numbered after graph's
    proto.graph.initializer.append(numpy_helper.from_array(np.arange(6, dtype=np.int64), "unused_constant"))
    write_model(proto, tmp_path / "written.onnx")
    assert onnx.load(tmp_path / "written.onnx") == proto
    onnx.checker.check_model(str(tmp_path / "written.onnx"), full_check=True)
    assert load_onnx(tmp_path / "written.onnx").module(torch.ones(2, 64)).shape == (2, 3)
