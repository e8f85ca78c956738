"""Rewrite a copy of an ONNX graph into the shape onnx2pytorch converts faithfully, or refuse it by name."""

from __future__ import annotations

import ast
import copy
import functools
import inspect
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx2pytorch.convert import operations as converter_operations

from gradaudit.errors import AuditError
from worker.engine.onnx.batch_norm import take_training_modes
from worker.engine.onnx.external_data import external_tensors, load_into_proto, read_array
from worker.engine.onnx.fold import (
    add_initializer_copy,
    drop_unused_initializers,
    fold_constants,
    initializers_for_identities,
)
from worker.engine.onnx.graph import DEFAULT_DOMAINS, all_nodes, names_read_by_subgraphs, nodes_in_bodies
from worker.engine.onnx.ops import attributes

# A placeholder onnx2pytorch turns into a plain module fed every input; we swap in our own after conversion.
PLACEHOLDER_OP = "Sum"
# Recurrent ops and the input positions of their initial states (ONNX operator spec).
_RECURRENT_STATES = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}
# Ops left to our own modules, which read weight and bias (inputs 1 and 2) as run-time inputs (MatMul: when
# input 1 is a weight matrix).
RUNTIME_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Their inputs after the first (scale, bias, statistics) belong to one layer: no network ties them on purpose.
_NORMALIZATION_OPS = ("LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization")
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)


@dataclass(frozen=True)
class Prepared:
    """The rewritten copy, routed recurrent initial states, nodes left for our own modules by output, their weights."""

    proto: onnx.ModelProto
    recurrent_states: set[str]
    runtime_nodes: dict[str, onnx.NodeProto]
    weights: dict[str, torch.Tensor]  # the runtime nodes' weights and biases, taken out of the proto
    batch_statistics: set[str]  # BatchNormalization nodes exported in training mode (batch statistics)


def prepare(proto: onnx.ModelProto, *, take: bool = False) -> Prepared:
    """A rewritten deep copy ready for ConvertModel; take=True rewrites proto itself (the caller gives it up).

    External tensors (located by external_data.locate_external_data) are read into the graph, except the weights
    and biases of Conv, ConvTranspose, Gemm and MatMul by a weight matrix, and the tables Gather reads from, which
    go straight from their file into `weights`: the converter never sees them, so there is never a second copy of
    them in the graph.
    """
    prepared = proto if take else copy.deepcopy(proto)  # conversion mutates its input (it fuses MatMul+Add)
    graph = prepared.graph
    _name_nodes(graph)
    training_modes = take_training_modes(graph)
    _initializer_outputs_from_nodes(graph)
    initializers_for_identities(graph)
    drop_unused_initializers(graph)  # before loading: one read only through an Identity now has its own copy
    stored_out_in = _matmul_by_weights_as_stored(graph)
    _load_external_tensors(graph, keep=_runtime_weights(graph, _own_op_type))
    fold_constants(graph, _opsets(prepared))
    refuse_unsupported(graph)  # after folding: an op only used to build weights no longer matters
    states = _route_initializers(graph, _recurrent_state_inputs)
    _route_initializers(graph, _matmul_inputs_not_a_weight)
    drop_unused_initializers(graph)
    held = _hold_out_runtime_weight_nodes(graph, stored_out_in)
    _untie_shared_initializers(graph, held)
    runtime = _runtime_weights(graph, lambda node: _own_op_type(held.get(node.output[0], node)))
    weights = _take_initializers(graph, runtime, transposed=_linear_layout(graph, held, runtime) - stored_out_in)
    _load_external_tensors(graph, keep=set())  # anything the rewrites left in its file
    _fold_gemm_scales(graph, held, weights)
    return Prepared(prepared, states, held, weights, training_modes)


def _matmul_by_weights_as_stored(graph: onnx.GraphProto) -> set[str]:
    """Turn MatMul(x, Transpose(W)) into MatMul(x, W) where the Transpose serves that MatMul alone; return those
    Ws, which are already stored (out, in) as torch's Linear wants them.

    An export without constant folding writes nn.Linear on a 3-D input so. Folding the Transpose would read W
    into the graph and copy it; this way W goes from its file into a parameter like any other weight matrix.
    """
    initializers = {t.name: t for t in graph.initializer}
    readers = _readers(graph)
    transposes = {node.output[0]: node for node in graph.node if _transposes_a_weight_matrix(node, initializers)}
    stored, dropped = set(), set()
    for node in graph.node:
        transpose = transposes.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if (transpose is None or node.input[0] in initializers or readers[transpose.output[0]] != 1
                or readers[transpose.input[0]] != 1):
            continue
        node.input[1] = transpose.input[0]
        stored.add(transpose.input[0])
        dropped.add(transpose.output[0])
    if dropped:
        _set_nodes(graph, [n for n in graph.node if n.op_type != "Transpose" or n.output[0] not in dropped])
    return stored


def _transposes_a_weight_matrix(node: onnx.NodeProto, initializers: dict) -> bool:
    weight = initializers.get(node.input[0]) if node.op_type == "Transpose" else None
    return (weight is not None and len(weight.dims) == 2 and weight.data_type in FLOAT_TYPES
            and attributes(node).get("perm", [1, 0]) == [1, 0])


def _initializer_outputs_from_nodes(graph: onnx.GraphProto) -> None:
    """Give each graph output that is an initializer an Identity node producing it under a new name.

    The converter collects outputs from what nodes produced, so a network returning one of its weights failed.
    Outputs are matched by position (the audit reads their names from the uploaded graph), so the new name
    changes nothing the user sees.
    """
    initializers = {t.name for t in graph.initializer}
    for output in graph.output:
        if output.name in initializers:
            alias = f"{output.name}__as_output"
            graph.node.append(onnx.helper.make_node("Identity", [output.name], [alias], name=alias))
            output.name = alias


def _own_op_type(node: onnx.NodeProto) -> str:
    return node.op_type


def _runtime_weights(graph: onnx.GraphProto, op_type: Callable[[onnx.NodeProto], str]) -> set[str]:
    """Float initializers read only as weights or biases of nodes our own modules run (_weight_positions)."""
    initializers = {t.name: t for t in graph.initializer}
    constants = set(initializers) | {name for node in graph.node if node.op_type == "Constant" for name in node.output}
    as_weight, elsewhere = set(), {o.name for o in graph.output} | set(names_read_by_subgraphs(graph))
    for node in graph.node:
        positions = _weight_positions(node, op_type(node), initializers, constants)
        for position, name in enumerate(node.input):
            (as_weight if position in positions else elsewhere).add(name)
    return {name for name in as_weight - elsewhere
            if name in initializers and initializers[name].data_type in FLOAT_TYPES}


def _weight_positions(node: onnx.NodeProto, op_type: str, initializers: dict, constants: set[str]) -> tuple[int, ...]:
    """The inputs our module for this node reads as weight and bias; () for nodes left to onnx2pytorch."""
    if op_type in ("Conv", "ConvTranspose", "Gemm"):
        return (1, 2)
    if op_type == "MatMul" and _by_a_weight_matrix(node, initializers):
        return (1, 2)  # 2: the bias of the Add folded into it (_fold_bias_add)
    if op_type == "Gather" and node.input[1] not in constants:
        # An embedding: a table looked up at indices the network computes. Constant indices are a constant
        # slice, which folding makes a tensor of its own whether the table is stored inline or in a file.
        return (0,)
    return ()


def _by_a_weight_matrix(node: onnx.NodeProto, initializers: dict) -> bool:
    weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
    return weight is not None and len(weight.dims) == 2 and node.input[0] not in initializers


def _load_external_tensors(graph: onnx.GraphProto, keep: set[str]) -> None:
    for tensor in list(external_tensors(graph)):
        if tensor.name not in keep:
            load_into_proto(tensor)


def _take_initializers(graph: onnx.GraphProto, names: set[str], transposed: set[str]) -> dict[str, torch.Tensor]:
    """Remove these initializers (and any graph.input entries for them) from the graph; return them as tensors,
    those named in `transposed` transposed as they are read."""
    taken = {}
    for index in reversed(range(len(graph.initializer))):
        tensor = graph.initializer[index]
        if tensor.name in names:
            taken[tensor.name] = torch.from_numpy(_values(tensor, tensor.name in transposed))
            del graph.initializer[index]
    for index in reversed([i for i, value in enumerate(graph.input) if value.name in taken]):
        del graph.input[index]
    return dict(reversed(taken.items()))  # graph order


def _values(tensor: onnx.TensorProto, transposed: bool) -> np.ndarray:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return read_array(tensor, transposed=transposed)
    values = numpy_helper.to_array(tensor)
    return np.array(values.T if transposed else values, order="C")  # a writable copy, never the proto's bytes


@functools.cache
def converted_op_types() -> frozenset[str]:
    """The op types onnx2pytorch's dispatch names explicitly (anything else it guesses from torch)."""
    tree = ast.parse(inspect.getsource(converter_operations.convert_operations))
    return frozenset(
        node.comparators[0].value for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and _is_op_type(node.left) and isinstance(node.ops[0], ast.Eq)
        and isinstance(node.comparators[0], ast.Constant)
    )


def _is_op_type(expression: ast.expr) -> bool:
    return isinstance(expression, ast.Attribute) and expression.attr == "op_type"


def refuse_unsupported(graph: onnx.GraphProto, *, computing_only: bool = False) -> None:
    """AuditError('unsupported_operator') naming the first op the converter would only guess at.

    computing_only: look only at nodes that depend on the graph's inputs, before folding (which removes the
    rest) has read any weights, so a network that can never convert is refused before anything else runs.
    """
    nodes = nodes_fed_by(graph, graph_inputs(graph)) if computing_only else list(graph.node)
    for node in [inner for node in nodes for inner in [node, *nodes_in_bodies(node)]]:
        if node.domain not in DEFAULT_DOMAINS:
            raise AuditError("unsupported_operator",
                             f"operator '{node.op_type}' of domain '{node.domain}' is not supported "
                             "by the ONNX-to-torch converter")
        if node.op_type not in converted_op_types():
            raise AuditError("unsupported_operator",
                             f"operator '{node.op_type}' is not supported by the ONNX-to-torch converter")


def graph_inputs(graph: onnx.GraphProto) -> set[str]:
    """The names of the inputs a caller feeds: graph.input less the initializers listed there (IR < 4)."""
    return {value.name for value in graph.input} - {t.name for t in graph.initializer}


def nodes_fed_by(graph: onnx.GraphProto, sources: set[str], *,
                 not_through: Collection[str] = ()) -> list[onnx.NodeProto]:
    """Nodes that read one of `sources` directly or through other such nodes, and every node with a subgraph
    (folding leaves those alone); nodes of a type in not_through are neither included nor followed."""
    live, nodes = set(sources), []
    for node in graph.node:
        if node.op_type in not_through:
            continue
        if any(name in live for name in node.input) or any(True for _ in nodes_in_bodies(node)):
            live.update(node.output)
            nodes.append(node)
    return nodes


def _readers(graph: onnx.GraphProto) -> Counter:
    """How many times each name is read: by nodes, by nodes in their bodies, and as a graph output."""
    readers = Counter(name for node in all_nodes(graph) for name in node.input)
    readers.update(output.name for output in graph.output)
    return readers


def _name_nodes(graph: onnx.GraphProto) -> None:
    taken = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
            while node.name in taken:
                node.name += "_"
            taken.add(node.name)


def _opsets(proto: onnx.ModelProto) -> dict[str, int]:
    return {("" if imp.domain == "ai.onnx" else imp.domain): imp.version for imp in proto.opset_import}


def _recurrent_state_inputs(node: onnx.NodeProto, initializers: dict) -> list[int]:
    # The converter refuses initial_h/initial_c initializers but takes them as activations.
    positions = _RECURRENT_STATES.get(node.op_type, ())
    return [i for i in positions if i < len(node.input) and node.input[i] in initializers]


def _matmul_inputs_not_a_weight(node: onnx.NodeProto, initializers: dict) -> list[int]:
    """MatMul inputs the converter would misread as a Linear weight.

    It turns the first initializer it finds into nn.Linear(x) = x @ W, which is only right for a 2-D
    initializer in second position; anything else must reach its generic MatMul as an activation.
    """
    if node.op_type != "MatMul":
        return []
    weights = [i for i, name in enumerate(node.input) if name in initializers]
    if weights == [1] and len(initializers[node.input[1]].dims) == 2:
        return []
    return weights


def _route_initializers(graph: onnx.GraphProto, positions) -> set[str]:
    """Feed the chosen initializer inputs through a new Identity node; return the initializers routed."""
    initializers = {t.name: t for t in graph.initializer}
    routed, nodes = set(), []
    for node in graph.node:
        for index in positions(node, initializers):
            name = node.input[index]
            alias = f"{name}__to_{node.name}_{index}"
            nodes.append(onnx.helper.make_node("Identity", [name], [alias], name=alias))
            node.input[index] = alias
            routed.add(name)
        nodes.append(node)
    if routed:
        _set_nodes(graph, nodes)
    return routed


def _hold_out_runtime_weight_nodes(graph: onnx.GraphProto, stored_out_in: set[str]) -> dict[str, onnx.NodeProto]:
    """Turn nodes onnx2pytorch cannot convert faithfully into placeholders; return the originals by output."""
    initializers = {t.name for t in graph.initializer}
    weights = _runtime_weights(graph, _own_op_type)
    bias_adds = _bias_adds(graph, weights, stored_out_in)
    adds = {node.output[0]: node for node in graph.node if node.output[0] in bias_adds.values()}
    held, nodes = {}, []
    for node in graph.node:
        if node.output[0] in adds:
            continue  # folded into the MatMul before it
        if node.output[0] in bias_adds:
            _fold_bias_add(node, adds[bias_adds[node.output[0]]])
        original = onnx.NodeProto()
        original.CopyFrom(node)
        if node.op_type in _RECURRENT_STATES and _needs_own_recurrent(node, initializers):
            nodes += _split_recurrent(node, original, held)
            continue
        if _needs_runtime_weights(node, weights):
            held[node.output[0]] = original
            node.op_type = PLACEHOLDER_OP
        nodes.append(node)
    _set_nodes(graph, nodes)
    return held


def _needs_runtime_weights(node: onnx.NodeProto, weights: set[str]) -> bool:
    # Every Conv and Gemm, and every MatMul by a weight matrix: onnx2pytorch would copy their weights into a
    # layer while the proto still holds them; ours read them as parameters that never entered the proto.
    if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
        return True
    if node.op_type == "MatMul":
        return len(node.input) > 1 and node.input[1] in weights
    if node.op_type == "Gather":
        return node.input[0] in weights
    if node.op_type in ("AveragePool", "MaxPool", "LpPool"):
        return _pool_beyond_torch(node)
    return node.op_type == "Range"  # its converter cannot take 0-d tensors as bounds


def _bias_adds(graph: onnx.GraphProto, weights: set[str], stored_out_in: set[str]) -> dict[str, str]:
    """MatMul output -> output of the Add that alone reads it and adds a bias vector: x @ W + b is one layer.

    As onnx2pytorch makes them one Linear, and as the network's author wrote them: the exporters split
    nn.Linear on inputs of three or more dimensions into MatMul and Add.
    """
    initializers = {t.name: t for t in graph.initializer}
    readers = _readers(graph)
    products = {node.output[0]: node.input[1] for node in graph.node
                if node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in weights}
    folded = {}
    for node in graph.node:
        if node.op_type != "Add" or len(set(node.input)) != 2:
            continue
        product, other = node.input if node.input[0] in products else reversed(node.input)
        bias = initializers.get(other)
        if product not in products or readers[product] != 1 or bias is None:
            continue
        weight = products[product]
        out = initializers[weight].dims[0 if weight in stored_out_in else 1]
        if list(bias.dims) in ([out], [1, out]) and bias.data_type in FLOAT_TYPES:  # what F.linear broadcasts alike
            folded[product] = node.output[0]
    return folded


def _fold_bias_add(matmul: onnx.NodeProto, add: onnx.NodeProto) -> None:
    matmul.input.append(next(name for name in add.input if name != matmul.output[0]))
    matmul.output[0] = add.output[0]


def _untie_shared_initializers(graph: onnx.GraphProto, held: dict[str, onnx.NodeProto]) -> None:
    """Give each held-out node but Gather, and each normalization's scale and bias, its own copy of an
    initializer that an earlier node also reads.

    Exporters store equal constant tensors once (every zero-initialised layer then reads the same one; the
    dynamo exporter's optimizer has every fresh LayerNorm read the first one's ones and zeros); as weights of
    separate layers they are separate parameters, each with its own gradient.
    """
    initializers = {t.name: t for t in graph.initializer}
    read = set()
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name not in initializers:
                continue
            own_weight = _held_with_own_weights(node, held) or (node.op_type in _NORMALIZATION_OPS and position > 0)
            if name in read and own_weight:
                node.input[position] = add_initializer_copy(graph, initializers[name], f"{name}/{node.output[0]}")
            read.add(name)


def _held_with_own_weights(node: onnx.NodeProto, held: dict[str, onnx.NodeProto]) -> bool:
    # Not Gather: two lookups in one table are a tie the user made (shared encoder and decoder embeddings),
    # never an exporter storing equal tables once.
    return node.output[0] in held and held[node.output[0]].op_type != "Gather"


def _linear_layout(graph: onnx.GraphProto, held: dict[str, onnx.NodeProto], weights: set[str]) -> set[str]:
    """The weights to store transposed, (out, in) as torch's Linear stores them: every held-out MatMul's, and
    Gemm's where transB=0 (those Gemms are marked transB=1 here).

    Weight facts read fan-in from the layout; a weight stored (in, out) would look like another network.
    """
    readers = _readers(graph)
    transposed = set()
    for node in graph.node:
        original = held.get(node.output[0])
        weight = _sole_reader_of(node, 1, weights, readers)
        if original is None or original.op_type not in ("MatMul", "Gemm"):
            continue
        if original.op_type == "MatMul":
            if weight is None:  # _runtime_weights and _untie_shared_initializers should make this impossible
                raise AuditError("conversion_failed", f"MatMul '{node.name}' shares its weight matrix")
            transposed.add(weight)
        elif weight and not attributes(original).get("transB", 0):
            transposed.add(weight)
            _set_attributes(original, transB=1)
    return transposed


def _fold_gemm_scales(graph: onnx.GraphProto, held: dict[str, onnx.NodeProto],
                      weights: dict[str, torch.Tensor]) -> None:
    """Fold a held-out Gemm's alpha into its weight and beta into its bias, in place, so weights show their scale."""
    readers = _readers(graph)
    for node in graph.node:
        original = held.get(node.output[0])
        if original is None or original.op_type != "Gemm":
            continue
        values = attributes(original)
        for position, scale in ((1, "alpha"), (2, "beta")):
            name = _sole_reader_of(node, position, weights, readers)
            if name and values.get(scale, 1.0) != 1.0:
                weights[name].mul_(values[scale])
                _set_attributes(original, **{scale: 1.0})


def _sole_reader_of(node: onnx.NodeProto, position: int, weights: Collection[str], readers: Counter) -> str | None:
    """The name of the weight the node reads at position, if no other input anywhere reads it too."""
    name = node.input[position] if len(node.input) > position else ""
    return name if name in weights and readers[name] == 1 else None


def _set_attributes(node: onnx.NodeProto, **values) -> None:
    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept + [onnx.helper.make_attribute(name, value) for name, value in values.items()])


def _pool_beyond_torch(node: onnx.NodeProto) -> bool:
    """Pads over half the (dilated) kernel, or dilated average/Lp pooling: torch's pooling refuses both."""
    values = attributes(node)
    if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
        return False  # the indices output stays with the converter
    kernel = list(values.get("kernel_shape", []))
    dilations = list(values.get("dilations", [1] * len(kernel)))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    pads = list(values.get("pads", []))
    too_wide = any(pad > spans[i % len(spans)] // 2 for i, pad in enumerate(pads)) if spans else False
    return too_wide or (node.op_type != "MaxPool" and any(d != 1 for d in dilations))


def _needs_own_recurrent(node: onnx.NodeProto, initializers: set[str]) -> bool:
    weights = [name for name in node.input[1:4] if name]
    refused = {"layout", "activations", "activation_alpha", "activation_beta", "clip", "input_forget"}
    peepholes = len(node.input) > 7 and node.input[7] != ""
    set_attributes = {a.name for a in node.attribute if a.name != "layout" or a.i != 0}
    return any(n not in initializers for n in weights) or bool(set_attributes & refused) or peepholes


def _split_recurrent(node: onnx.NodeProto, original: onnx.NodeProto, held: dict) -> list[onnx.NodeProto]:
    """The recurrent node as one placeholder returning a tuple, then one placeholder per used output."""
    packed = f"{node.name}__outputs"
    held[packed] = original
    nodes = [onnx.helper.make_node(PLACEHOLDER_OP, list(node.input), [packed], name=node.name)]
    for index, output in enumerate(node.output):
        if output:
            name = f"{node.name}/output_{index}"
            held[output] = onnx.helper.make_node("RecurrentOutput", [packed], [output], name=name, index=index)
            nodes.append(onnx.helper.make_node(PLACEHOLDER_OP, [packed], [output], name=name))
    return nodes


def _set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    copies = [onnx.NodeProto() for _ in nodes]
    for copy_, node in zip(copies, nodes):
        copy_.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
