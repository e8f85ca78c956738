"""Recurrences the dynamo exporter unrolled: torch.onnx.export's default writes an nn.RNN, LSTM or GRU as one
MatMul and activation per time step instead of an RNN node, and records in each node's metadata the module it
came from. Read as they stand, thirty time steps are thirty weight layers and the gradient through time a
depth trend; recognised, they are one recurrence, as the legacy exporter's RNN node and the TorchScript trace
present it, and the gradient through time is read off the steps the probe observed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import onnx

from worker.diagnosis.facts import PLAIN, RECURRENT, LayerRole
from worker.engine.network import RECURRENCES

_CLASSES = "pkg.torch.onnx.class_hierarchy"
_SCOPES = "pkg.torch.onnx.name_scopes"
_STEP_ACTIVATIONS = ("Tanh", "Relu")  # a plain recurrence's hidden state is one of these per step


@dataclass
class UnrolledRecurrence:
    """One recurrent module's nodes, its role, and for a plain one its hidden state per step in time order."""

    role: LayerRole
    nodes: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def unrolled_recurrences(graph: onnx.GraphProto) -> dict[str, UnrolledRecurrence]:
    """By module path (`rnn`, `encoder.gru`), every recurrence whose nodes carry the exporter's module record."""
    found: dict[str, UnrolledRecurrence] = {}
    for node in graph.node:
        scope = _recurrent_scope(node)
        if scope is None:
            continue
        path, role = scope
        recurrence = found.setdefault(path, UnrolledRecurrence(role))
        recurrence.nodes.append(node.name)
        if role.function == PLAIN and node.op_type in _STEP_ACTIVATIONS:
            recurrence.steps.append(node.name)
    return found


def recurrence_roles(recurrences: dict[str, UnrolledRecurrence]) -> dict[str, LayerRole]:
    """By node name: every node of an unrolled recurrence is part of it, whatever its op."""
    return {name: recurrence.role for recurrence in recurrences.values() for name in recurrence.nodes}


def _recurrent_scope(node: onnx.NodeProto) -> tuple[str, LayerRole] | None:
    metadata = {entry.key: entry.value for entry in node.metadata_props}
    classes, scopes = _as_list(metadata.get(_CLASSES)), _as_list(metadata.get(_SCOPES))
    for depth, qualified in enumerate(classes[:len(scopes)]):
        role = RECURRENCES.get(qualified.rsplit(".", 1)[-1]) if qualified.startswith("torch.nn.modules.rnn.") else None
        if role is not None and role.role == RECURRENT:
            return ".".join(scope for scope in scopes[1:depth + 1] if scope), role
    return None


def _as_list(value: str | None) -> list[str]:
    """The exporter writes these records as Python list literals."""
    if not value:
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return []
    return [str(item) for item in parsed] if isinstance(parsed, list) else []
