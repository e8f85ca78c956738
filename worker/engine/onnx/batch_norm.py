"""BatchNormalization as opset 14 and later write it: a `training_mode` attribute, which the converter does not
read. Inference (0, the default) is what the converter computes anyway; training (1) normalises with the
batch's own statistics, which the converted module is then told to do."""

from __future__ import annotations

import onnx

from gradaudit.errors import AuditError
from worker.engine.onnx.graph import names_read


def take_training_modes(graph: onnx.GraphProto) -> set[str]:
    """Remove every BatchNormalization's training_mode attribute; return the names of the nodes that normalise
    with batch statistics (training_mode=1), whose optional running-statistics outputs nothing may read."""
    read = names_read(graph) | {output.name for output in graph.output}
    training = set()
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        mode = next((a for a in node.attribute if a.name == "training_mode"), None)
        if mode is None:
            continue
        node.attribute.remove(mode)
        if onnx.helper.get_attribute_value(mode):
            _drop_running_statistics(node, read)
            training.add(node.name)
    return training


def _drop_running_statistics(node: onnx.NodeProto, read: set[str]) -> None:
    used = [name for name in node.output[1:] if name and name in read]
    if used:
        raise AuditError("unsupported_operator", f"BatchNormalization '{node.name}' in training mode: its updated "
                                                 f"running statistics ({', '.join(used)}) are read; only its "
                                                 "normalised output can be audited")
    del node.output[1:]
