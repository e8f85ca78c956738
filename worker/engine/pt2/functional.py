"""Weight layers that are never called but whose weight a functional op reads: that op's output is their output.

The same rule as TorchScript's (worker/engine/torchscript/functional.py, which says why): Swin's attention hands
`self.qkv.weight` to F.linear, so the exported graph's aten::linear carries the attention's module stack, not
`qkv`'s. A module with parameters and no call of its own whose `weight` placeholder (a get_attr node once the
program is unlifted) has exactly one user, a computing op, gets that op's output, named by the module's path. A
weight with several users (read by several ops, or by a cond/loop subgraph) is left untapped: ambiguous.
"""

from __future__ import annotations

import torch

from worker.engine.pt2.calls import CallOutput
from worker.engine.pt2.vocabulary import op_name
from worker.engine.torchscript.functional import COMPUTING_OPS as _TORCHSCRIPT_OPS

COMPUTING_OPS = _TORCHSCRIPT_OPS | {"aten::convolution"}
# An uncalled module's class is nowhere in the program; where the op says what it computes, the class that would
# have called it names the layer's kind, as TorchScript's class name does (so its role is a weight layer's).
_KINDS = {"aten::linear": "Linear", "aten::conv1d": "Conv1d", "aten::conv2d": "Conv2d", "aten::conv3d": "Conv3d"}


def functional_outputs(graph: torch.fx.Graph, candidates: set[str]) -> dict[str, CallOutput]:
    """Per candidate module path whose weight one computing op reads: that op, as the module's call output."""
    users: dict[str, list[torch.fx.Node]] = {}
    for node in graph.find_nodes(op="get_attr"):
        path, _, name = str(node.target).rpartition(".")
        if name == "weight" and path in candidates:
            users.setdefault(path, []).extend(node.users)
    return {path: CallOutput(readers[0], path) for path, readers in users.items()
            if len(readers) == 1 and op_name(readers[0]) in COMPUTING_OPS and _is_tensor(readers[0])}


def passed_on(outputs: dict[str, CallOutput], functional: dict[str, CallOutput]) -> dict[str, CallOutput]:
    """The callers whose output is such an op's: they pass the layer's output on, as they would a called child's."""
    layer_of = {found.node: path for path, found in functional.items()}
    return {path: CallOutput(found.node, layer_of[found.node]) for path, found in outputs.items()
            if found.node in layer_of}


def functional_kind(output: CallOutput, kind: str) -> str:
    """The layer's kind: its class where the program names it, else the module class its op stands for."""
    return _KINDS.get(op_name(output.node), kind) if kind == "Module" else kind


def _is_tensor(node: torch.fx.Node) -> bool:
    return isinstance(node.meta.get("val"), torch.Tensor)
