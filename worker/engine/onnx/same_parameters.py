"""Which parameters of a converted ONNX network hold one parameter of the user's network.

An ONNX file can store one parameter several times: the exporters unroll a shared layer into a node per call,
and each call's MatMul reads its own constant-folded transposed copy (dynamo) or an Identity of one (legacy);
a tied output projection reads the embedding table, transposed. The converter then gives each node its own
copy. Counted as they are, ALBERT's 12 calls make an 11.7M-parameter network 89M.

Nothing in the file names the parameter behind a copy, so the values do: copies hold the same entries, perhaps
transposed, and two parameters initialised at random never do. Entries are compared as a multiset (shape up
to order, min, max and sum of squares), which a transposed copy keeps. Constant tensors are the exception: a
fresh LayerNorm's ones or a zero bias equal every other one of its size, so a constant tensor is one
parameter only within the module that reads it (the module scope the exporter recorded, call suffixes
dropped). Two distinct parameters with equal random values (a copy made by hand) count once.
"""

from __future__ import annotations

import ast
import re

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
    seen: list[tuple[tuple, float, str]] = []
    same = {}
    for layer in layers:
        for name in layer.parameter_names:
            key, square = _signature(parameters[name].detach(), scopes.get(layer.name, ""))
            first = next((n for k, s, n in seen if k == key and abs(s - square) <= _RELATIVE * max(s, square)), None)
            if first is None:
                seen.append((key, square, name))
            elif first != name:
                same[name] = first
    return same


def node_scopes(graph: onnx.GraphProto) -> dict[str, str]:
    """Node name -> the module that ran it: the dynamo exporter's recorded scope, else the legacy exporter's
    node name ('/encoder/shared/up_3/MatMul' -> 'encoder/shared/up')."""
    return {node.name: _scope(node) for node in graph.node}


def _scope(node: onnx.NodeProto) -> str:
    recorded = next((p.value for p in node.metadata_props if p.key == _SCOPES), None)
    if recorded:
        try:
            names = ast.literal_eval(recorded)
            return str(names[-2]) if len(names) >= 2 else ""
        except (ValueError, SyntaxError, TypeError):
            return ""
    return "/".join(_CALL_SUFFIX.sub("", part) for part in node.name.split("/")[1:-1])


def _signature(tensor: torch.Tensor, scope: str) -> tuple[tuple, float]:
    """What copies share exactly (and the scope for a constant), and the sum of squares they share closely."""
    flat = tensor.reshape(-1)
    if flat.numel() == 0:
        return (tuple(sorted(tensor.shape)), str(tensor.dtype), scope), 0.0
    low, high = float(flat.min()), float(flat.max())
    key = (tuple(sorted(tensor.shape)), str(tensor.dtype), low, high)
    return (key + (scope,) if low == high else key), _sum_of_squares(flat)


def _sum_of_squares(flat: torch.Tensor) -> float:
    total = 0.0
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        chunk = flat[start:start + CHUNK_ELEMENTS].double()
        total += float(torch.dot(chunk, chunk))
    return total
