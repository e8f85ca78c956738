"""The edits behind each recommendation code, made on a copy of the ONNX graph. Each takes the graph, the
recommendation and an EditInputs, changes the graph in place, and returns the patch in words a PyTorch user can
apply to their source; NotApplicable (with the reason) where this network does not allow it.

Initialisations are torch.nn.init's own functions, seeded, applied in torch's [out, in, *kernel] layout: the patch
text names the very call that was made."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import helper

from worker.remedies.graph import (
    Graph,
    NotApplicable,
    WeightLayer,
    activation_after,
    opset,
    pre_activation,
    weight_layer,
)

LEAKY_SLOPE = 0.01
BATCH_NORM_EPSILON = 1e-5
# Shapes ONNX shape inference could not settle are compared as unknown: a block is shape-preserving only when
# both ends are known and equal.


@dataclass
class EditInputs:
    """What edits need beyond the graph: the seed for new weights, and a way to calibrate new BatchNormalization
    nodes on the probe batches (graph, node names -> per node its running mean and variance)."""

    seed: int
    calibrate: Callable[[onnx.ModelProto, list[str]], dict[str, tuple[np.ndarray, np.ndarray]]] | None = None
    notes: list[str] = field(default_factory=list)


INIT_CALLS = {
    "relu": ("torch.nn.init.kaiming_normal_(w, nonlinearity='relu')",
             lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu")),
    "tanh": ("torch.nn.init.xavier_normal_(w)", torch.nn.init.xavier_normal_),
    "selu": ("torch.nn.init.kaiming_normal_(w, nonlinearity='linear')",
             lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="linear")),
    "linear": ("torch.nn.init.orthogonal_(w)", torch.nn.init.orthogonal_),
    "recurrent": ("torch.nn.init.orthogonal_(weight_hh)", torch.nn.init.orthogonal_),
}
# The init each reinit code stands for, where the recommendation does not say per layer.
_CODE_INITS = {"reinit_he": "relu", "reinit_xavier": "tanh", "reinit_orthogonal": "linear"}


def apply_edit(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """Make the recommendation's edit on graph; the patch, in words."""
    edit = _EDITS.get(recommendation["code"])
    if edit is None:
        raise NotApplicable(f"gradaudit has no automatic edit for {recommendation['code']!r}")
    if not recommendation.get("layers") and recommendation["code"] not in _WHOLE_NETWORK:
        raise NotApplicable("the recommendation names no layer to change")
    torch.manual_seed(inputs.seed)
    return edit(graph, recommendation, inputs)


def _reinit(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    inits = recommendation.get("edit", {}).get("inits") or {}
    default = _CODE_INITS.get(recommendation["code"], "relu")
    done: dict[str, list[str]] = {}
    for name in recommendation["layers"]:
        family = inits.get(name, default)
        if family == "recurrent":
            _orthogonal_recurrence(graph, name)
        else:
            layer = weight_layer(graph, name)
            weight = layer.weight(graph).float()
            INIT_CALLS[family][1](weight)
            layer.set_weight(graph, weight)
        done.setdefault(INIT_CALLS[family][0], []).append(name)
    return "; ".join(f"re-initialised {_listed(names)} with {call}" for call, names in done.items())


def _orthogonal_recurrence(graph: Graph, name: str) -> None:
    node = graph.node(name)
    if node.op_type not in ("RNN", "GRU", "LSTM") or len(node.input) < 3 or not graph.initializer(node.input[2]):
        raise NotApplicable(f"layer {name!r} is not a recurrence with a stored recurrent matrix")
    from onnx import numpy_helper

    recurrent = numpy_helper.to_array(graph.initializer(node.input[2])).copy()  # [directions, gates*H, H]
    hidden = recurrent.shape[-1]
    for direction in range(recurrent.shape[0]):
        for gate in range(recurrent.shape[1] // hidden):
            block = torch.empty(hidden, hidden)
            torch.nn.init.orthogonal_(block)
            recurrent[direction, gate * hidden:(gate + 1) * hidden] = block.numpy()
    graph.set_initializer(node.input[2], recurrent)


def _use_relu(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    swapped = []
    for name in recommendation["layers"]:
        layer = weight_layer(graph, name)
        activation = activation_after(graph, layer)
        if activation is None or activation.op_type not in ("Sigmoid", "Tanh", "HardSigmoid"):
            raise NotApplicable(f"no sigmoid or tanh follows layer {name!r}")
        _become(activation, "Relu")
        weight = layer.weight(graph).float()
        torch.nn.init.kaiming_normal_(weight, nonlinearity="relu")
        layer.set_weight(graph, weight)
        swapped.append(name)
    return (f"replaced the sigmoid/tanh after {_listed(swapped)} with ReLU (nn.ReLU()) and re-initialised those "
            f"layers with {INIT_CALLS['relu'][0]}")


def _use_leaky_relu(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    for name in recommendation["layers"]:
        node = graph.node(name)
        if node.op_type != "Relu":
            raise NotApplicable(f"layer {name!r} is a {node.op_type}, not a ReLU")
        _become(node, "LeakyRelu", alpha=LEAKY_SLOPE)
    return f"replaced the ReLUs {_listed(recommendation['layers'])} with nn.LeakyReLU(negative_slope={LEAKY_SLOPE})"


def _reset_biases(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    for name in recommendation["layers"]:
        layer = weight_layer(graph, name)
        if layer.bias_name is None:
            raise NotApplicable(f"layer {name!r} has no stored bias")
        bias = graph.initializer(layer.bias_name)
        graph.set_initializer(layer.bias_name, np.zeros(list(bias.dims), np.float32))
    return f"set the biases of {_listed(recommendation['layers'])} to zero (torch.nn.init.zeros_(layer.bias))"


def _add_batch_norm(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """A BatchNormalization after each named layer, before its activation, calibrated on the probe batches the way
    training calibrates one (inputs.calibrate): running statistics as a trained network would hold them; scale 1,
    shift 0."""
    if inputs.calibrate is None:
        raise NotApplicable("no probe batches to calibrate a BatchNorm with")
    shapes, added = _shapes(graph), []
    for name in recommendation["layers"]:
        layer = weight_layer(graph, name)
        anchor = pre_activation(graph, layer)
        shape = shapes.get(anchor.output[0])
        if shape is None or len(shape) < 2 or (layer.node.op_type != "Conv" and len(shape) != 2) or shape[1] is None:
            raise NotApplicable(f"the output of layer {name!r} is not [batch, features] or [batch, channels, ...]"
                                " (sequences take LayerNorm)")
        added.append(_insert_batch_norm(graph, anchor, anchor.output[0], shape[1]))
    for node_name, (mean, variance) in inputs.calibrate(graph.proto, added).items():
        node = graph.node(node_name)
        graph.set_initializer(node.input[3], mean.astype(np.float32))
        graph.set_initializer(node.input[4], variance.astype(np.float32))
    kind = "BatchNorm2d" if weight_layer(graph, recommendation["layers"][0]).node.op_type == "Conv" else "BatchNorm1d"
    return (f"added nn.{kind} after {_listed(recommendation['layers'])}, each before its activation, with running "
            "statistics measured on the probe batches as training measures them (weight 1, bias 0)")


def _insert_batch_norm(graph: Graph, anchor: onnx.NodeProto, value: str, channels: int) -> str:
    """A BatchNormalization at initial statistics reading value, its readers moved onto its output; its name."""
    names = [graph.add_initializer(f"{value}_bn_{part}", array.astype(np.float32)) for part, array in (
        ("scale", np.ones(channels)), ("shift", np.zeros(channels)), ("mean", np.zeros(channels)),
        ("var", np.ones(channels)))]
    normalised, node_name = graph.unique_name(f"{value}_bn"), graph.unique_name(f"{anchor.name}_BatchNorm")
    node = helper.make_node("BatchNormalization", [value, *names], [normalised], name=node_name,
                            epsilon=BATCH_NORM_EPSILON)
    graph.reroute(value, normalised)
    graph.insert_after(anchor, [node])
    return node_name


def _add_skip_connections(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """x + f(x) around each block that starts at a named weight layer and ends at its activation, where the
    block's input and output have the same known shape."""
    blocks = _blocks(graph, recommendation["layers"])
    if not blocks:
        raise NotApplicable("no named layer starts a block whose output has its input's shape (x + f(x) needs it)")
    for layer, exit_node in blocks:
        entry = layer.node.input[0]  # read now: the residual before this one may have rerouted it
        summed = graph.unique_name(f"{exit_node.output[0]}_residual")
        add = helper.make_node("Add", [entry, exit_node.output[0]], [summed],
                               name=graph.unique_name(f"{exit_node.name}_residual"))
        graph.reroute(exit_node.output[0], summed)
        graph.insert_after(exit_node, [add])
    return (f"added identity residuals (x + f(x)) around {len(blocks)} block(s) of a weight layer and its "
            f"activation, starting at {_listed([layer.node.name for layer, _ in blocks])}")


def _blocks(graph: Graph, names: list[str]) -> list[tuple[WeightLayer, onnx.NodeProto]]:
    """(weight layer, the block's last node) for each named layer that starts a block whose output has the same
    known shape as its input: the layer, then its activation where one follows."""
    shapes, blocks = _shapes(graph), []
    for name in names:
        try:
            layer = weight_layer(graph, name)
        except NotApplicable:
            continue
        exit_node = activation_after(graph, layer) or pre_activation(graph, layer)
        before, after = shapes.get(layer.node.input[0]), shapes.get(exit_node.output[0])
        if before is not None and before == after and None not in before[1:]:
            blocks.append((layer, exit_node))
    return blocks


def _reduce_depth(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """Bypass every second shape-preserving block (weight layer and activation) among the named layers."""
    blocks = _blocks(graph, recommendation["layers"])
    if len(blocks) < 2:
        raise NotApplicable("fewer than two blocks keep their input's shape: none can be removed without "
                            "changing the shapes of the layers after it")
    removed = blocks[1::2]
    names = [layer.node.name for layer, _ in removed]
    for layer, exit_node in removed:
        graph.reroute(exit_node.output[0], layer.node.input[0])
    _prune(graph)
    return (f"removed {len(removed)} of the {len(blocks)} shape-preserving blocks (every second one, starting at "
            f"{_listed(names)}), so the gradient crosses that many fewer layers")


def _prune(graph: Graph) -> None:
    """Drop nodes and initializers nothing reads any more."""
    needed = {output.name for output in graph.graph.output}
    kept = []
    for node in reversed(list(graph.graph.node)):
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.graph.node[:]
    graph.graph.node.extend(reversed(kept))
    used = [tensor for tensor in graph.graph.initializer if tensor.name in needed]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(used)


def _scale_residual_branches(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """Fixup's rescaling (Zhang et al. 2019): the weight layers of each residual branch scaled by L^(-1/(2m-2)),
    L branches, m weight layers per branch; the branch's last weight layer scaled to zero."""
    branches = _residual_branches(graph)
    if not branches:
        raise NotApplicable("no residual addition with a weight layer in its branch was found")
    count = len(branches)
    for layers in branches:
        m = len(layers)
        factor = count ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0
        for index, layer in enumerate(layers):
            weight = layer.weight(graph)
            layer.set_weight(graph, weight * (0.0 if index == len(layers) - 1 else factor))
    return (f"scaled the weight layers of {count} residual branches by L^(-1/(2m-2)) (L={count}) and zeroed the "
            "last weight layer of each branch (Fixup initialisation)")


def _residual_branches(graph: Graph) -> list[list[WeightLayer]]:
    """Per Add of two computed values where one is an ancestor of the other: the weight layers on the longer
    path (the branch), input side first."""
    producers = {output: node for node in graph.graph.node for output in node.output}
    branches = []
    for node in graph.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or not any(name in producers for name in node.input):
            continue  # the skip may be a graph input; the branch is computed
        left, right = node.input
        for skip, branch in ((left, right), (right, left)):
            layers = _weights_between(graph, producers, branch, skip)
            if layers:
                branches.append(layers)
                break
    return branches


def _weights_between(graph: Graph, producers: dict, start: str, stop: str) -> list[WeightLayer] | None:
    """The weight layers on the chain from value start back to value stop (first inputs only); None if the
    chain does not reach stop."""
    layers, value, steps = [], start, 0
    while value != stop and value in producers and steps < 64:
        node = producers[value]
        if node.op_type in ("Gemm", "MatMul", "Conv"):
            try:
                layers.append(weight_layer(graph, node.name))
            except NotApplicable:
                return None
        value, steps = node.input[0], steps + 1
    return list(reversed(layers)) if value == stop and layers else None


def _use_lstm(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """Each named plain RNN becomes an LSTM of the same sizes: PyTorch's default uniform(-1/sqrt(H), 1/sqrt(H))
    input weights, orthogonal recurrent blocks, forget-gate bias 1."""
    for name in recommendation["layers"]:
        node = graph.node(name)
        if node.op_type != "RNN":
            raise NotApplicable(f"layer {name!r} is a {node.op_type}, not a plain RNN (an exporter that unrolls "
                                "the recurrence into one MatMul per step leaves nothing to replace)")
        _rnn_to_lstm(graph, node)
    return (f"replaced {_listed(recommendation['layers'])} with nn.LSTM of the same input and hidden sizes "
            "(recurrent weights orthogonal per gate, forget-gate bias 1)")


def _rnn_to_lstm(graph: Graph, node: onnx.NodeProto) -> None:
    from onnx import numpy_helper

    input_weights = numpy_helper.to_array(graph.initializer(node.input[1]))  # [directions, H, I]
    directions, hidden, features = input_weights.shape
    bound = 1 / math.sqrt(hidden)
    w = torch.empty(directions, 4 * hidden, features).uniform_(-bound, bound)
    r = torch.empty(directions, 4 * hidden, hidden)
    for d in range(directions):
        for gate in range(4):
            torch.nn.init.orthogonal_(r[d, gate * hidden:(gate + 1) * hidden])
    b = torch.zeros(directions, 8 * hidden)
    b[:, 2 * hidden:3 * hidden] = 1.0  # ONNX gate order i, o, f, c: the forget gate is the third block
    names = [graph.add_initializer(f"{node.name}_lstm_{part}", tensor.numpy()) for part, tensor in
             (("W", w), ("R", r), ("B", b))]
    rest = list(node.input[4:6]) if len(node.input) > 4 else []  # sequence_lens, initial_h
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute
                  if a.name in ("direction", "hidden_size", "layout")}
    lstm = helper.make_node("LSTM", [node.input[0], *names, *rest], list(node.output[:2]), name=node.name,
                            **attributes)
    graph.replace(node, lstm)
    _prune(graph)


# The clamp that keeps each op's output finite for every finite input: (clamp op, bound).
_GUARDS = {"Log": ("Max", 1e-12), "Sqrt": ("Max", 0.0), "Exp": ("Min", 80.0)}


def _guard_nonfinite(graph: Graph, recommendation: dict, inputs: EditInputs) -> str:
    """Clamp the input of every log, sqrt and exp: what a finite input can turn into NaN/Inf there."""
    guarded: dict[str, int] = {}
    for node in [n for n in graph.graph.node if n.op_type in _GUARDS]:
        clamp, bound = _GUARDS[node.op_type]
        limit = graph.add_initializer(f"{node.name or node.op_type}_guard_bound", np.array(bound, np.float32))
        clamped = graph.unique_name(f"{node.input[0]}_guarded")
        guard = helper.make_node(clamp, [node.input[0], limit], [clamped],
                                 name=graph.unique_name(f"{node.name or node.op_type}_guard"))
        node.input[0] = clamped
        graph.insert_before(node, [guard])
        guarded[node.op_type] = guarded.get(node.op_type, 0) + 1
    if not guarded:
        raise NotApplicable("the graph has no log, sqrt or exp to guard: the non-finite values come from elsewhere "
                            "(a division, the weights or the inputs)")
    said = {"Log": "log at least 1e-12", "Sqrt": "sqrt at least 0", "Exp": "exp at most 80"}
    return "clamped the input of " + ", ".join(f"{count} {said[op]}" for op, count in guarded.items()) + (
        " (torch: x.clamp_min(...) / x.clamp_max(...) before the op)")


_EDITS = {
    "reinit_he": _reinit, "reinit_xavier": _reinit, "reinit_orthogonal": _reinit,
    "use_relu": _use_relu, "use_leaky_relu": _use_leaky_relu, "reset_biases": _reset_biases,
    "add_batch_norm": _add_batch_norm, "add_skip_connections": _add_skip_connections,
    "reduce_depth": _reduce_depth, "scale_residual_branches": _scale_residual_branches,
    "use_lstm_or_gru": _use_lstm, "guard_nonfinite": _guard_nonfinite,
}
_WHOLE_NETWORK = ("scale_residual_branches", "guard_nonfinite")
EDITABLE_CODES = tuple(_EDITS)


def _become(node: onnx.NodeProto, op_type: str, **attributes) -> None:
    node.op_type = op_type
    del node.attribute[:]
    node.attribute.extend(helper.make_attribute(key, value) for key, value in attributes.items())


def _listed(names: list[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    if len(quoted) > 4:
        return f"{len(quoted)} layers from {quoted[0]} to {quoted[-1]}"
    return ", ".join(quoted) if quoted else "no layer"


def _shapes(graph: Graph) -> dict[str, list[int | None]]:
    """Every value's shape as shape inference gives it (a symbolic or unknown dim as None), read from the graph
    without its weights: inference on the whole proto would serialise every weight."""
    try:
        inferred = onnx.shape_inference.infer_shapes(graph.without_weights())
    except Exception:
        return {}
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None
                                  for d in value.type.tensor_type.shape.dim]
    return shapes


__all__ = ["EDITABLE_CODES", "EditInputs", "apply_edit", "opset"]
