"""Every coded AuditError the engine raises, each from a realistic bad artifact or bad option."""

from __future__ import annotations

import zipfile

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from tests.support.networks import export_onnx, mlp, save_torchscript
from worker.engine.audit import audit_network
from worker.engine.device import resolve_device


def _code(path, **kwargs) -> AuditError:
    kwargs.setdefault("options", AuditOptions())
    with pytest.raises(AuditError) as caught:
        audit_network(path, device="cpu", **kwargs)
    assert "Traceback" not in caught.value.detail and "\n" not in caught.value.detail
    return caught.value


def test_garbage_protobuf_that_sniffs_as_onnx_is_invalid_onnx(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07\x3a\x03\xff\xff\xff")
    assert _code(path).code == "invalid_onnx"


def test_graph_that_fails_the_checker_is_invalid_onnx(tmp_path):
    node = helper.make_node("Relu", ["missing"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "c.onnx"))
    assert _code(tmp_path / "c.onnx").code == "invalid_onnx"


def test_external_weights_are_refused_by_name(tmp_path, mlp_onnx):
    proto = onnx.load(str(mlp_onnx))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    error = _code(tmp_path / "ext.onnx")
    assert error.code == "external_data_missing" and "'weights.bin'" in error.detail


def test_operator_the_converter_lacks_is_named(tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], domain="custom.ops")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("custom.ops", 1)])
    onnx.save(proto, str(tmp_path / "f.onnx"))
    error = _code(tmp_path / "f.onnx")
    assert error.code == "unsupported_operator" and "FancyOp" in error.detail


def test_an_operator_the_converter_lacks_is_named_before_the_inputs_are_questioned(tmp_path):
    # Asking for input shapes of a network that can never be audited would send the user on an errand.
    node = helper.make_node("FancyOp", ["x"], ["y"], domain="custom.ops")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "f"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "f"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("custom.ops", 1)])
    onnx.save(proto, str(tmp_path / "f.onnx"))

    assert _code(tmp_path / "f.onnx").code == "unsupported_operator"


def test_initializer_names_the_converter_would_merge_fail_conversion_by_name(tmp_path):
    # The converter keeps initializers as attributes with '.' turned into '_': 'fc.w' and 'fc_w' would be one.
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.w"], ["h"], transB=1), helper.make_node("Add", ["h", "fc_w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[onnx.numpy_helper.from_array(np.ones((4, 3), np.float32), "fc.w"),
                     onnx.numpy_helper.from_array(np.ones(4, np.float32), "fc_w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "n.onnx"))

    error = _code(tmp_path / "n.onnx")
    assert error.code == "conversion_failed" and "_initializer_fc_w" in error.detail


def test_broken_torchscript_archive_is_invalid_torchscript(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.pt", "w") as archive:
        archive.writestr("bad/code/__torch__.py", "not python at all (")
        archive.writestr("bad/data.pkl", b"\x80\x02garbage")
    assert _code(tmp_path / "bad.pt").code == "invalid_torchscript"


def test_unrecognised_bytes_are_unsupported_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert _code(tmp_path / "notes.txt").code == "unsupported_format"


def test_torchscript_without_shapes_needs_input_shapes(mlp_script):
    error = _code(mlp_script)
    assert error.code == "input_shape_required" and "'input'" in error.detail


def test_dynamic_feature_dim_needs_input_shapes(tmp_path):
    path = export_onnx(mlp(), torch.randn(2, 6), tmp_path / "d.onnx", dynamic={0: "b", 1: "features"})
    error = _code(path)
    assert error.code == "input_shape_required" and "dimension 1" in error.detail


def test_rank_mismatch_with_declared_shape(mlp_onnx):
    assert _code(mlp_onnx, options=AuditOptions(input_shapes={"x": [2, 6, 1]})).code == "input_shape_mismatch"


def test_unknown_input_name_lists_the_real_ones(mlp_onnx):
    error = _code(mlp_onnx, options=AuditOptions(input_shapes={"image": [2, 6]}))
    assert error.code == "unknown_input" and "'x'" in error.detail


@pytest.mark.parametrize("arrays", [{"other": np.ones((2, 6), np.float32)}, {"x": np.ones((2, 6), np.int64)}])
def test_npz_with_missing_name_or_wrong_dtype_is_invalid_inputs(tmp_path, mlp_onnx, arrays):
    np.savez(tmp_path / "b.npz", **arrays)
    assert _code(mlp_onnx, inputs_path=tmp_path / "b.npz").code == "invalid_inputs"


def test_file_that_is_not_npz_is_invalid_inputs(tmp_path, mlp_onnx):
    (tmp_path / "b.npz").write_bytes(b"not a zip")
    assert _code(mlp_onnx, inputs_path=tmp_path / "b.npz").code == "invalid_inputs"


def test_wrong_shape_is_forward_failed_with_one_line(mlp_script):
    error = _code(mlp_script, options=AuditOptions(input_shapes={"input": [2, 7]}))
    assert error.code == "forward_failed" and error.detail.startswith("RuntimeError") and len(error.detail) <= 300


def test_cross_entropy_on_a_vector_output_is_not_applicable(tmp_path):
    class Vector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 1)

        def forward(self, x):
            return self.fc(x).flatten()

    path = save_torchscript(Vector(), tmp_path / "v.pt")
    options = AuditOptions(input_shapes={"x": [4, 3]}, loss="cross_entropy")
    assert _code(path, options=options).code == "loss_not_applicable"


def test_integer_only_output_has_nothing_to_differentiate(tmp_path):
    class ArgMax(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 4)

        def forward(self, x):
            return self.fc(x).argmax(dim=1)

    path = save_torchscript(ArgMax(), tmp_path / "a.pt")
    assert _code(path, options=AuditOptions(input_shapes={"x": [4, 3]})).code == "no_differentiable_output"


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AuditError) as caught:
        resolve_device("tpu")
    assert caught.value.code == "device_unavailable"
    if not torch.cuda.is_available():
        with pytest.raises(AuditError):
            resolve_device("cuda:0")
