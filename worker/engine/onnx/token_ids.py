"""Which ONNX graph inputs hold token ids: those whose values reach the indices of a Gather from a table
initializer, directly or through ops that only reshape or select them (GPT-2 reshapes its ids first)."""

from __future__ import annotations

import onnx

# Ops whose first input's entries come out unchanged, only moved or picked: what comes out is still token ids.
_ID_PRESERVING = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "Slice", "Transpose", "Expand", "Tile",
})


def vocabulary_size(input_name: str, graph: onnx.GraphProto, initializers: dict[str, onnx.TensorProto]) -> int | None:
    """Rows of the first embedding table this input's entries index, if any (the bound for synthetic ids)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            readers.setdefault(name, []).append(node)
    pending, seen = [input_name], set()
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        for node in readers.get(current, []):
            rows = _table_rows(node, current, initializers)
            if rows is not None:
                return rows
            if node.op_type in _ID_PRESERVING and node.input[0] == current:
                pending.extend(node.output)
    return None


def _table_rows(node: onnx.NodeProto, indices: str, initializers: dict[str, onnx.TensorProto]) -> int | None:
    """The table's row count when node is a Gather along axis 0 of a table initializer at these indices."""
    if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] != indices:
        return None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    table = initializers.get(node.input[0])
    if table is None or not table.dims or axis not in (0, -len(table.dims)):
        return None
    return int(table.dims[0])
