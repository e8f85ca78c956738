"""Which parameters of a converted ONNX network hold one parameter of the user's network.

An ONNX file can store one parameter several times: the exporters unroll a shared layer into a node per call,
and each call's MatMul reads its own constant-folded transposed copy (dynamo) or an Identity of one (legacy);
a tied output projection reads the embedding table, transposed. The converter then gives each node its own
copy. Counted as they are, ALBERT's 12 calls make an 11.7M-parameter network 89M.

Nothing in the file names the parameter behind a copy, so the values and the module reading them do. Copies
hold the same entries, perhaps transposed; entries are compared as a multiset (shape up to order, min, max and
sum of squares), which a transposed copy keeps. Equal values alone are not enough: nn.TransformerEncoder
deep-copies its layer, so at initialisation every layer holds the same values, and a fresh LayerNorm's ones or
a zero bias equal every other one of its size. So copies are one parameter where the same module reads them
(its calls: the module scope the dynamo exporter recorded, or the legacy exporter's node name without its `_k`
call suffix; in a file not written by torch, the node), or where one of them is an embedding table (a Gather's
data) and neither is constant: an output projection tied to the input embedding (Press & Wolf 2017). Other
ties across modules (an autoencoder's W and W^T) count twice; two modules of one name that differs only by a
`_k` suffix, holding equal values, count once.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import onnx
import torch

from worker.engine.network import Layer
from worker.engine.parameter_stats import CHUNK_ELEMENTS

_SCOPES = "pkg.torch.onnx.name_scopes"  # the dynamo exporter's module path of each node
_CALL_SUFFIX = re.compile(r"_\d+$")  # the legacy exporter names a module's k-th call 'name_k'
_RELATIVE = 1e-6  # sums of squares of the same entries in another order agree far closer than this


def same_parameters(module: torch.nn.Module, layers: list[Layer], graph: onnx.GraphProto) -> dict[str, str]:
    """Parameter name -> the name of the first parameter holding the same one of the user's network."""
    parameters, scopes = dict(module.named_parameters()), node_scopes(graph)
    seen: list[tuple[_Held, str]] = []  # every reading so far, and the name of the parameter it holds
    same = {}
    for layer in layers:
        for name in layer.parameter_names:
            held = _held(parameters[name].detach(), scopes.get(layer.name, layer.name), layer.kind == "Gather")
            first = next((root for earlier, root in seen if _same(earlier, held)), name)
            seen.append((held, first))
            if first != name:
                same[name] = first
    return same


@dataclass(frozen=True)
class _Held:
    """One parameter as read by one layer: what copies share exactly, what they share closely, who reads it."""

    values: tuple
    square: float
    constant: bool
    scope: str
    table: bool


def _held(tensor: torch.Tensor, scope: str, table: bool) -> _Held:
    flat = tensor.reshape(-1)
    low, high = (float(flat.min()), float(flat.max())) if flat.numel() else (0.0, 0.0)
    values = (tuple(sorted(tensor.shape)), str(tensor.dtype), low, high)
    return _Held(values, _sum_of_squares(flat), low == high, scope, table)


def _same(earlier: _Held, held: _Held) -> bool:
    if earlier.values != held.values or abs(earlier.square - held.square) > _RELATIVE * max(earlier.square,
                                                                                             held.square):
        return False
    tied = (earlier.table or held.table) and not held.constant
    return earlier.scope == held.scope or tied


def node_scopes(graph: onnx.GraphProto) -> dict[str, str]:
    """Node name -> the module that ran it: the dynamo exporter's recorded scope, else the legacy exporter's
    node name ('/encoder/shared/up_3/MatMul' -> 'encoder/shared/up'), else the node itself."""
    return {node.name: _scope(node) for node in graph.node}


def _scope(node: onnx.NodeProto) -> str:
    recorded = next((p.value for p in node.metadata_props if p.key == _SCOPES), None)
    if recorded:
        try:
            names = ast.literal_eval(recorded)
            return str(names[-2]) if len(names) >= 2 else ""
        except (ValueError, SyntaxError, TypeError):
            return ""
    if not node.name.startswith("/"):  # not a torch export: each node is its own module
        return node.name
    return "/".join(_CALL_SUFFIX.sub("", part) for part in node.name.split("/")[1:-1])


def _sum_of_squares(flat: torch.Tensor) -> float:
    total = 0.0
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        chunk = flat[start:start + CHUNK_ELEMENTS].double()
        total += float(torch.dot(chunk, chunk))
    return total
