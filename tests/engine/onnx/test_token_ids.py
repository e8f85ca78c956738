"""Token ids are found through reshapes before the embedding lookup, and bounded by the table they index."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network
from worker.engine.formats import load_network
from worker.engine.onnx.token_ids import vocabulary_size


def _reshaped_lookup(tmp_path, *, axis: int = 0) -> tuple[onnx.GraphProto, str]:
    """ids [2, 5] -> Reshape [-1, 5] -> Gather(table [50, 4]) -> ReduceSum: GPT-2's shape of lookup."""
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32), "table")
    shape = numpy_helper.from_array(np.array([-1, 5], dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["ids", "shape"], ["flat"], name="view"),
             helper.make_node("Gather", ["table", "flat"], ["vectors"], name="embedding", axis=axis),
             helper.make_node("ReduceSum", ["vectors"], ["y"], name="sum", keepdims=0)]
    graph = helper.make_graph(nodes, "lookup", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [table, shape])
    path = tmp_path / "lookup.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return graph, str(path)


def test_ids_reshaped_before_the_lookup_are_bounded_by_the_table(tmp_path):
    graph, _ = _reshaped_lookup(tmp_path)
    assert vocabulary_size("ids", graph, {t.name: t for t in graph.initializer}) == 50


def test_a_gather_along_another_axis_is_no_embedding(tmp_path):
    graph, _ = _reshaped_lookup(tmp_path, axis=1)
    assert vocabulary_size("ids", graph, {t.name: t for t in graph.initializer}) is None


def test_an_integer_input_that_indexes_no_table_has_no_bound(tmp_path):
    graph, _ = _reshaped_lookup(tmp_path)
    assert vocabulary_size("shape", graph, {}) is None


def test_the_audit_draws_ids_over_the_whole_table_through_the_reshape(tmp_path):
    _, path = _reshaped_lookup(tmp_path)
    assert load_network(path).inputs[0].vocab == 50
    result = audit_network(path, options=AuditOptions(), device="cpu")
    assert result.setup["inputs"]["ids"].startswith("integers uniform over [0, 50)")
