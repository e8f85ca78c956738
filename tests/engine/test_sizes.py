"""Sizes are checked before allocation: shape bombs in ONNX graphs, options and .npz headers are input_too_large,
refused in moments with no memory spent on them."""

from __future__ import annotations

import io
import resource
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network
from worker.engine.onnx.sizes import refuse_oversized
from worker.engine.sizes import memory_budget

ELEMENTS = 10**11  # 400 GB of float32


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _refused_quickly(path: Path, **kwargs) -> AuditError:
    """The audit's refusal, asserting it came in seconds and grew the process's peak memory by little."""
    peak, started = _peak_rss_mb(), time.monotonic()
    with pytest.raises(AuditError) as refused:
        audit_network(path, options=kwargs.pop("options", AuditOptions()), device="cpu", **kwargs)
    assert time.monotonic() - started < 20  # seconds on a loaded machine; the allocation would never finish
    assert _peak_rss_mb() - peak < 512
    return refused.value


def _save(tmp_path: Path, nodes, inputs, outputs, initializers=(), opset: int = 13) -> Path:
    graph = helper.make_graph(nodes, "bomb", inputs, outputs, initializer=list(initializers))
    path = tmp_path / "bomb.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def _float(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _ints(name: str, values) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _shape_bomb(tmp_path: Path, op: str, x_dims=(1, 1)) -> Path:
    """x -> op -> Add(x) -> y, the op asked by a constant for ~10^11 elements."""
    x, y = _float("x", list(x_dims)), _float("y", ["n", "m"])
    add = helper.make_node("Add", ["big", "x"], ["y"])
    if op == "ConstantOfShape":
        node = helper.make_node("ConstantOfShape", ["shape"], ["big"])
        return _save(tmp_path, [node, add], [x], [y], [_ints("shape", [10**5, 10**6])])
    if op == "Expand":
        node = helper.make_node("Expand", ["x", "shape"], ["big"])
        return _save(tmp_path, [node, add], [x], [y], [_ints("shape", [10**5, 10**6])])
    if op == "Tile":
        node = helper.make_node("Tile", ["x", "repeats"], ["big"])
        return _save(tmp_path, [node, add], [x], [y], [_ints("repeats", [10**5, 10**6])])
    node = helper.make_node("Resize", ["x4", "", "", "sizes"], ["big4"], mode="nearest")
    flat = helper.make_node("Reshape", ["big4", "flat"], ["big"])
    x4 = helper.make_node("Reshape", ["x", "four"], ["x4"])
    return _save(tmp_path, [x4, node, flat, add], [x], [y],
                 [_ints("sizes", [1, 1, 10**5, 10**6]), _ints("four", [1, 1, 1, 1]), _ints("flat", [10**5, 10**6])])


@pytest.mark.parametrize("x_dims", [(1, 1), ("batch", 1)], ids=["static", "symbolic_batch"])
@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile", "Resize"])
def test_operator_outputs_past_the_budget_are_refused_before_running(op, x_dims, tmp_path):
    # A symbolic batch broadcast against 10^5 is a dimension shape inference leaves unknown: the target alone
    # must bound the output.
    refused = _refused_quickly(_shape_bomb(tmp_path, op, x_dims))
    assert refused.code == "input_too_large"
    assert "GRADAUDIT_AUDIT_MEMORY_MB" in refused.detail


def test_an_opset_newer_than_onnx_knows_is_refused(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    add = helper.make_node("Add", ["x", "x"], ["y"])
    path = _save(tmp_path, [add], [_float("x", [2, 4])], [_float("y", [2, 4])], opset=newest + 1)
    refused = _refused_quickly(path)
    assert refused.code == "unsupported_opset" and f"opset {newest + 1}" in refused.detail


def test_a_constant_node_feeding_constant_of_shape_is_read_too(tmp_path):
    shape = helper.make_node("Constant", [], ["shape"], value=_ints("v", [10**11]))
    node = helper.make_node("ConstantOfShape", ["shape"], ["big"])
    add = helper.make_node("Add", ["big", "x"], ["y"])
    path = _save(tmp_path, [shape, node, add], [_float("x", [1])], [_float("y", ["n", "m"])])
    assert _refused_quickly(path).code == "input_too_large"


def test_an_initializer_declaring_2_to_the_62_is_refused(tmp_path):
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**31, 2**31])  # no data: a declaration
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    path = _save(tmp_path, [node], [_float("x", [1, 2**31])], [_float("y", ["n", "m"])], [weight])
    refused = _refused_quickly(path)
    assert refused.code == "input_too_large" and "'w'" in refused.detail


def test_a_declared_input_of_2_to_the_62_is_refused(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    path = _save(tmp_path, [node], [_float("x", [2**62, 4])], [_float("y", ["n", "m"])])
    assert _refused_quickly(path).code == "input_too_large"


def test_input_shapes_from_options_past_the_budget_are_refused(mlp_onnx, mlp_script):
    for path in (mlp_onnx, mlp_script):
        options = AuditOptions(input_shapes={"x" if path == mlp_onnx else "input": [2**62, 6]})
        refused = _refused_quickly(path, options=options)
        assert refused.code in ("input_too_large", "unknown_input")
        if refused.code == "unknown_input":  # the TorchScript input is named after forward's argument
            name = refused.detail.split("inputs are ['")[1].split("'")[0]
            refused = _refused_quickly(path, options=AuditOptions(input_shapes={name: [2**62, 6]}))
        assert refused.code == "input_too_large", refused.detail


def _npz_declaring(shape, tmp_path: Path, name: str = "x") -> Path:
    """An .npz whose array header declares `shape` float32, followed by no data at all."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    path = tmp_path / "inputs.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.npy", header.getvalue())  # the header carries the magic
    return path


def test_an_npz_array_declaring_400_gb_is_refused_from_its_header(mlp_onnx, tmp_path):
    inputs = _npz_declaring((10**5, 10**6), tmp_path)
    refused = _refused_quickly(mlp_onnx, inputs_path=inputs)
    assert refused.code == "input_too_large" and "'x.npy'" in refused.detail


def test_a_small_network_is_within_the_budget(mlp_onnx):
    refuse_oversized(onnx.load(mlp_onnx), memory_budget())


def test_the_budget_follows_the_process_memory_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = 8 * 1024**3
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        assert memory_budget() <= limit
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
