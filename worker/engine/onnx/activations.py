"""Activations an exporter writes out of smaller operators, recognised by what they compute: x·Sigmoid(x) is
SiLU (Swish), x·HardSigmoid(x) is HardSwish, and a Tanh whose output is shifted by 1 is the tanh form of GELU.
Read by op type alone, such a Sigmoid or Tanh would be taken for a squashing activation to replace."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from worker.diagnosis.facts import ACTIVATION, LayerRole

_GATES = {"Sigmoid": "silu", "HardSigmoid": "hardswish"}


def composed_activations(graph: onnx.GraphProto, constants: dict[str, float]) -> dict[str, LayerRole]:
    """By node name, the role of every node that is part of a composed activation; constants: scalar_constants
    of the graph as uploaded (conversion takes the initializers out of it)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {**constants, **scalar_constants(graph)}
    roles = {}
    for node in graph.node:
        for user in consumers.get(node.output[0], []) if node.output else []:
            if node.op_type in _GATES and user.op_type == "Mul" and set(user.input) == {node.input[0], node.output[0]}:
                roles[node.name] = roles[user.name] = LayerRole(ACTIVATION, _GATES[node.op_type])
            if node.op_type == "Tanh" and user.op_type == "Add" and _adds_one(user, node.output[0], constants):
                roles[node.name] = LayerRole(ACTIVATION, "gelu")
    return roles


def _adds_one(add: onnx.NodeProto, operand: str, constants: dict[str, float]) -> bool:
    other = [name for name in add.input if name != operand]
    return len(other) == 1 and constants.get(other[0]) == 1.0


def scalar_constants(graph: onnx.GraphProto) -> dict[str, float]:
    """Values of one-element initializers and Constant nodes, by name."""
    values = {tensor.name: tensor for tensor in graph.initializer
              if int(np.prod(tensor.dims)) == 1 and tensor.data_location != onnx.TensorProto.EXTERNAL}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    return {name: float(numpy_helper.to_array(tensor).reshape(-1)[0]) for name, tensor in values.items()
            if int(np.prod(tensor.dims)) == 1}
