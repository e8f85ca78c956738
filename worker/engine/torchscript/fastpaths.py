"""A pass over a loaded TorchScript network: fused inference fast paths become the ordinary aten ops they compute.

A trace taken in eval mode under no_grad (the usual way) records nn.MultiheadAttention's and
nn.TransformerEncoderLayer's fused kernels, which have no derivative, so the probe's backward would fail. Where
the fused node reads the parameters of nn's own submodules, the module's own forward is edited into calls of
them (layer_calls.py), so each keeps its tap. Any fused node left is replaced, on the inlined forward, by the
graph of its composition in fused_ops.py, the inserted nodes carrying the fused node's module call so taps and
call numbers still find it. nn.TransformerEncoder's padding path (a nested tensor built from the key padding
mask, the layers run on it, then padded back) becomes the dense equivalent there: the layers read the mask as a
key padding mask, and the padded positions take the padding value at the end. A fused op that cannot be
rewritten faithfully is refused with the way to export without it.

Scripted code keeps the fast path inside the `if` that checks, while running, that no gradient is wanted; the
probe runs with gradients, so it never takes that branch, and nodes inside blocks are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gradaudit.errors import AuditError
from worker.engine.torchscript import fused_ops, layer_calls

ATTENTION = "aten::_native_multi_head_attention"
ENCODER_LAYER = "aten::_transformer_encoder_layer_fwd"
TO_NESTED = "aten::_nested_tensor_from_mask"
TO_PADDED = "aten::to_padded_tensor"
# Fused inference kernels without a derivative that nothing here rewrites.
_REFUSED = frozenset({"aten::_native_decoder_only_multi_head_attention", "aten::_transformer_decoder_only_layer_fwd",
                      "aten::_transform_bias_rescale_qkv", "aten::_triton_multi_head_attention",
                      "aten::_triton_scaled_dot_attention"})
_FUSED = frozenset({ATTENTION, ENCODER_LAYER, TO_NESTED}) | _REFUSED
_MASK, _MASK_TYPE = {ATTENTION: 9, ENCODER_LAYER: 18}, {ATTENTION: 12, ENCODER_LAYER: 19}
_EXPORT_HINT = ("call torch.backends.mha.set_fastpath_enabled(False) before tracing (or trace with gradients enabled) "
                "so the export records the ordinary attention ops")


def unfuse_fast_paths(module: torch.jit.ScriptModule) -> list[str]:
    """Rewrite the fused fast-path nodes the module's forward runs, in place; the kinds rewritten (none: untouched).

    It must run before anything inlines the module's graphs: torch keeps each method's body as first inlined,
    and an edit made after that would not be what runs."""
    found = _top_level_kinds(module) & _FUSED
    if not found:
        return []
    if TO_NESTED not in found:  # the padding path's layers need the mask, known only on the inlined graph
        for _, submodule in module.named_modules():
            layer_calls.rewrite_module(submodule)
    if _top_level_kinds(module) & _FUSED:
        graph = module._c._get_method("forward").graph
        torch._C._jit_pass_inline(graph)  # the nested-tensor path runs across module calls: rewrite one graph
        _Rewrite(graph).run()
    return sorted(found)


def _top_level_kinds(module: torch.jit.ScriptModule) -> set[str]:
    """The node kinds on the top level of every module's own forward (a traced network's ops all are)."""
    return {node.kind() for _, submodule in module.named_modules() if submodule._c._has_method("forward")
            for node in submodule._c._get_method("forward").graph.nodes()}


def _refuse(kind: str, why: str) -> AuditError:
    return AuditError("unsupported_operator", f"{kind} (PyTorch's fused inference fast path) {why}; {_EXPORT_HINT}")


class _Rewrite:
    """One pass over a graph; keeps, for each value standing for a nested tensor, the mask it was built from."""

    def __init__(self, graph: torch._C.Graph):
        self.graph = graph
        self.keep: dict[str, torch._C.Value] = {}
        self.to_nested: list[torch._C.Node] = []

    def run(self) -> None:
        """Rewrite every fused node, then let each nested tensor's dense source stand in for it."""
        for node in list(self.graph.nodes()):
            self.node(node)
        for node in self.to_nested:
            node.output().replaceAllUsesWith(node.inputsAt(0))
            node.destroy()

    def node(self, node: torch._C.Node) -> None:
        """Rewrite one node if it is a fused one (or reads a nested tensor), or refuse it."""
        kind = node.kind()
        if kind in _REFUSED:
            raise _refuse(kind, "has no derivative and no rewrite here")
        if kind == TO_NESTED:
            self._track(node.output(), node.inputsAt(1))
            self.to_nested.append(node)
        elif kind in (ATTENTION, ENCODER_LAYER):
            self._fused(node)
        elif kind == TO_PADDED and self._nested(node.inputsAt(0)):
            inputs = [node.inputsAt(0), self._kept(node.inputsAt(0)), node.inputsAt(1)]
            self._replace(node, _graph_of("padded", inputs))

    def _fused(self, node: torch._C.Node) -> None:
        kind, inputs = node.kind(), list(node.inputs())
        mask, mask_type = _MASK[kind], _MASK_TYPE[kind]
        _check_mask_type(kind, inputs[mask_type])
        keep = self.keep.get(inputs[0].debugName())
        if keep is not None:  # the layer ran on a nested tensor: every sequence sees its own tokens only
            if not _is_none(inputs[mask]) or any(self._nested(value) for value in inputs[1:3]):
                raise _refuse(kind, "has a nested input beside a mask or another input")
            with self.graph.insert_point_guard(node):
                inputs[mask] = _graph_of("key_padding", [keep])(self.graph)[0]
                inputs[mask_type] = self.graph.insertConstant(1)
        outputs = self._replace(node, self._insertion(node, inputs))
        if keep is not None:
            self._track(outputs[0], keep)

    def _insertion(self, node: torch._C.Node, inputs: list[torch._C.Value]) -> Callable[[torch._C.Graph], list]:
        """What replaces a fused node on the inlined graph: the graph of its composition."""
        if node.kind() == ATTENTION:
            return _graph_of("multi_head_attention", inputs)
        return _graph_of("transformer_encoder_layer", inputs)

    def _replace(self, node: torch._C.Node, insert: Callable[[torch._C.Graph], list]) -> list[torch._C.Value]:
        """Insert the replacement before node, give its nodes node's module call, and drop node."""
        with self.graph.insert_point_guard(node):
            first = self.graph.insertConstant(0).node()  # a marker: everything after it up to node is new
            outputs = insert(self.graph)
        for new in _between(first, node):
            new.copyMetadata(node)  # its scope and inlined call stack: the module call the fused node belonged to
        for old, new in zip(node.outputs(), outputs):
            old.replaceAllUsesWith(new)
        node.destroy()
        first.destroy()
        return outputs

    def _track(self, value: torch._C.Value, keep: torch._C.Value) -> None:
        """Remember that value stands for a nested tensor built from keep; refuse it if it goes where the dense
        rewrite cannot follow (returned, or read by any other op)."""
        for use in value.uses():
            if use.user.kind() not in (ATTENTION, ENCODER_LAYER, TO_PADDED):
                raise _refuse(TO_NESTED, f"feeds {use.user.kind()}, which the dense rewrite cannot follow")
        self.keep[value.debugName()] = keep

    def _nested(self, value: torch._C.Value) -> bool:
        return value.debugName() in self.keep

    def _kept(self, value: torch._C.Value) -> torch._C.Value:
        return self.keep[value.debugName()]


def _check_mask_type(kind: str, mask_type: torch._C.Value) -> None:
    if mask_type.node().kind() != "prim::Constant" or _is_none(mask_type):
        return  # decided while running: the composition raises on a type it does not know
    if mask_type.toIValue() not in (0, 1, 2):
        raise _refuse(kind, f"has mask_type {mask_type.toIValue()}, which has no known meaning")


def _is_none(value: torch._C.Value) -> bool:
    return value.type().kind() == "NoneType"


def _between(first: torch._C.Node, last: torch._C.Node) -> list[torch._C.Node]:
    """The nodes after first and before last in their block, with the nodes of their blocks."""
    found, node = [], last.prev()
    while node != first:
        found.append(node)
        node = node.prev()
    return [inner for node in found for inner in _with_blocks(node)]


def _with_blocks(node: torch._C.Node) -> list[torch._C.Node]:
    return [node] + [inner for block in node.blocks() for child in block.nodes() for inner in _with_blocks(child)]


def _graph_of(name: str, inputs: list[torch._C.Value]) -> Callable[[torch._C.Graph], list]:
    return lambda graph: graph.insertGraph(fused_ops.inlined_graph(name), inputs)
