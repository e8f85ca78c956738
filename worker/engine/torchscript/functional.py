"""Weight layers that are never called but whose weight a functional op reads: that op's output is their output.

torchvision's Swin attention holds `qkv` and `proj` Linear modules but never calls them; it hands `self.qkv.weight`
to a function that calls F.linear (nn.MultiheadAttention does the same with `out_proj`). The trace then records no
call of `qkv`, only an aten::linear in the attention's code reading `qkv.weight` through prim::GetAttr. The rule:
a module with parameters and no tapped call whose `weight` is read by exactly one computing op in the whole graph,
on the top level, gets that op's output, named by the module's path (the .pt2 adapter applies the same rule,
worker/engine/pt2/functional.py). A weight read by several ops (a caller called several times, a tied weight, a
weight transposed or sliced first, so the op reads another value) is left untapped: which op is the layer's output,
or which call, is ambiguous, and the layer keeps its parameter statistics as before.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

# The ops whose output is the layer's output when they read its weight: what Linear and Conv modules call.
COMPUTING_OPS = frozenset({
    "aten::linear", "aten::addmm", "aten::matmul", "aten::mm", "aten::_convolution", "aten::conv1d", "aten::conv2d",
    "aten::conv3d", "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d",
})


def weight_readers(graph: torch._C.Graph) -> dict[str, list[torch._C.Node]]:
    """Per module path (named_modules() spelling), every node anywhere in the graph that uses its `weight`."""
    readers: dict[str, list[torch._C.Node]] = {}
    for node in _all_nodes(graph.block()):
        if node.kind() == "prim::GetAttr" and node.s("name") == "weight":
            path = _attribute_path(node.input())
            if path is not None:
                readers.setdefault(path, []).extend(use.user for use in node.output().uses())
    return readers


def functional_outputs(graph: torch._C.Graph, candidates: set[str]) -> dict[str, tuple[torch._C.Value, int]]:
    """Per candidate module path whose weight one computing op reads: (that op's output, its top-level position)."""
    positions = {node: position for position, node in enumerate(graph.nodes())}
    found = {}
    for path, readers in weight_readers(graph).items():
        if path in candidates and len(readers) == 1 and _computes(readers[0], positions):
            found[path] = (readers[0].outputsAt(0), positions[readers[0]])
    return found


def _computes(node: torch._C.Node, positions: dict) -> bool:
    # Top level only: a tap inside an If or Loop block would observe one branch or iteration.
    return node.kind() in COMPUTING_OPS and node in positions and node.outputsAt(0).type().kind() == "TensorType"


def _attribute_path(value: torch._C.Value) -> str | None:
    """'attn.qkv' for a value read as self.attn.qkv through prim::GetAttr nodes; None for anything else."""
    names, node = [], value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.input().node()
    return ".".join(reversed(names)) if node.kind() == "prim::Param" and names else None


def _all_nodes(block: torch._C.Block) -> Iterator[torch._C.Node]:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _all_nodes(inner)
