"""A fused nn.TransformerEncoderLayer or nn.MultiheadAttention rewritten as calls of its own submodules, so each
keeps its tap.

aten::_transformer_encoder_layer_fwd reads the layer's parameters but calls none of its submodules, so the
trace records no call of self_attn, linear1, linear2, norm1 or norm2. Inserted as one block of ops, the
composition would be one tap for the whole layer where the same network traced without the fast path has one
per submodule. Where the fused node reads those submodules' parameters (an nn.TransformerEncoderLayer, as
PyTorch calls it), each gets a method computing what its share of the kernel computes, and the node becomes
calls of those methods. The edit is made in the layer's own forward, so inlining the network names each call
by its full module path, as if the trace had recorded it. A layer fed a nested tensor (the padding path) is
left to the rewrite of the inlined graph, which knows the mask it was built from (fastpaths.py). Likewise
aten::_native_multi_head_attention reads out_proj's parameters without calling it: its out-projection becomes
a call of out_proj.
"""

from __future__ import annotations

import warnings
from typing import Optional  # noqa: F401 - the methods' source names it

import torch
from torch import Tensor  # noqa: F401 - the methods' source names it

from worker.engine.torchscript import fused_ops
from worker.engine.torchscript.fused_ops import attention_context  # noqa: F401 - the methods' source calls it
from worker.engine.torchscript.normalization import attribute_path

METHOD = "gradaudit_unfused"
# The fused op's inputs: (position, submodule, parameter) for each parameter, in aten's order.
_PARAMETERS = ((3, "self_attn", "in_proj_weight"), (4, "self_attn", "in_proj_bias"),
               (5, "self_attn.out_proj", "weight"), (6, "self_attn.out_proj", "bias"),
               (10, "norm1", "weight"), (11, "norm1", "bias"), (12, "norm2", "weight"), (13, "norm2", "bias"),
               (14, "linear1", "weight"), (15, "linear1", "bias"), (16, "linear2", "weight"), (17, "linear2", "bias"))
_SOURCES = {
    "norm": f"def {METHOD}(self, x: Tensor, eps: float) -> Tensor:\n"
            "    return torch.nn.functional.layer_norm(x, self.weight.size(), self.weight, self.bias, eps)\n",
    "linear": f"def {METHOD}(self, x: Tensor) -> Tensor:\n"
              "    return torch.nn.functional.linear(x, self.weight, self.bias)\n",
    "self_attn": f"def {METHOD}(self, x: Tensor, embed_dim: int, num_heads: int, mask: Optional[Tensor],\n"
                 "                     mask_type: Optional[int]) -> Tensor:\n"
                 "    context = attention_context(x, x, x, embed_dim, num_heads, self.in_proj_weight, self.in_proj_bias,\n"
                 "                                mask, False, True, mask_type)[0]\n"
                 f"    return self.out_proj.{METHOD}(context)\n",
}
ENCODER_LAYER = "aten::_transformer_encoder_layer_fwd"
ATTENTION = "aten::_native_multi_head_attention"
_ATTENTION_PARAMETERS = {5: "in_proj_weight", 6: "in_proj_bias", 7: "out_proj.weight", 8: "out_proj.bias"}
_CONTEXT_INPUTS = (0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12)  # attention_context's arguments among the fused op's
_EMBED_DIM, _NUM_HEADS, _USE_GELU, _NORM_FIRST, _EPS, _MASK, _MASK_TYPE = 1, 2, 7, 8, 9, 18, 19
_MASK_TYPE_OF_ATTENTION = 12


def rewrite_module(module: torch.jit.ScriptModule) -> None:
    """Rewrite the fused nodes on the top level of the module's own forward into calls of its submodules, where
    they read its submodules' parameters as nn's own modules do (others are left alone)."""
    if module._c._has_method("forward"):
        rewrite_layer(module)
        rewrite_attention(module)


def rewrite_attention(attention: torch.jit.ScriptModule) -> None:
    """aten::_native_multi_head_attention on the module's own parameters: the heads as ops, then out_proj called."""
    graph = attention._c._get_method("forward").graph
    modules = dict(attention.named_modules())
    for node in [node for node in graph.nodes() if node.kind() == ATTENTION]:
        inputs = list(node.inputs())
        mask_type = inputs[_MASK_TYPE_OF_ATTENTION]
        if any(attribute_path(inputs[i]) != name for i, name in _ATTENTION_PARAMETERS.items()) or \
                "out_proj" not in modules or _unknown_constant(mask_type):
            continue
        _define(modules["out_proj"], _SOURCES["linear"])
        with graph.insert_point_guard(node):
            context, weights = graph.insertGraph(fused_ops.inlined_graph("attention_context"),
                                                 [inputs[i] for i in _CONTEXT_INPUTS])
            output = _call(graph, inputs[7].node().input(), context)
        node.outputsAt(0).replaceAllUsesWith(output)
        node.outputsAt(1).replaceAllUsesWith(weights)
        node.destroy()


def _unknown_constant(mask_type: torch._C.Value) -> bool:
    return mask_type.node().kind() == "prim::Constant" and mask_type.toIValue() not in (None, 0, 1, 2)


def rewrite_layer(layer: torch.jit.ScriptModule) -> bool:
    """Rewrite the fused node on the top level of the layer's own forward into calls of its submodules; whether
    it did (a graph not of this shape is left alone)."""
    graph = layer._c._get_method("forward").graph
    modules = dict(layer.named_modules())
    fused = [node for node in graph.nodes() if node.kind() == ENCODER_LAYER]
    values = [submodules(node, modules) for node in fused]
    if not fused or any(found is None or _prefix(node) != "" for node, found in zip(fused, values)):
        return False
    for node, found in zip(fused, values):
        define_methods(found, modules)
        node.output().replaceAllUsesWith(insert_calls(graph, node, found))
        node.destroy()
    return True


def _prefix(node: torch._C.Node) -> str | None:
    return _layer_prefix(attribute_path(node.inputsAt(3)), "self_attn.in_proj_weight")


def submodules(node: torch._C.Node, modules: dict) -> dict[str, torch._C.Value] | None:
    """The values of the layer's self_attn, norm1, norm2, linear1 and linear2 in the graph, if the fused node
    reads exactly their parameters and its switches are constants; None otherwise."""
    inputs = list(node.inputs())
    if any(inputs[i].node().kind() != "prim::Constant" for i in (_USE_GELU, _NORM_FIRST, _EPS)):
        return None
    prefixes = {_layer_prefix(attribute_path(inputs[position]), f"{owner}.{name}")
                for position, owner, name in _PARAMETERS}
    if len(prefixes) != 1 or None in prefixes:
        return None
    prefix = prefixes.pop()
    found = {owner: inputs[position].node().input() for position, owner, _ in _PARAMETERS if "." not in owner}
    return found if all(f"{prefix}{owner}" in modules for owner in found) else None


def _layer_prefix(path: str, suffix: str) -> str | None:
    """'enc.layers.0.' for 'enc.layers.0.norm1.weight' and suffix 'norm1.weight' ('' at the top); None if the
    parameter is not the suffix's."""
    if path == suffix:
        return ""
    return path[: -len(suffix)] if path.endswith(f".{suffix}") else None


def define_methods(values: dict[str, torch._C.Value], modules: dict) -> None:
    """Give each submodule the method computing its share of the fused layer (once per module type)."""
    for owner, value in values.items():
        path = attribute_path(value)
        if owner == "self_attn":
            _define(modules[f"{path}.out_proj"], _SOURCES["linear"])  # the method self_attn's calls
        _define(modules[path], _SOURCES["self_attn" if owner == "self_attn" else owner.rstrip("12")])


def _define(module: torch.jit.ScriptModule, source: str) -> None:
    if not module._c._has_method(METHOD):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            module.define(source)


def _call(graph: torch._C.Graph, receiver: torch._C.Value, *args: torch._C.Value) -> torch._C.Value:
    """Insert receiver.METHOD(*args), a tensor."""
    created = graph.create("prim::CallMethod", [receiver, *args], 1)
    created.s_("name", METHOD)
    created.output().setType(torch._C.TensorType.get())
    graph.insertNode(created)
    return created.output()


def insert_calls(graph: torch._C.Graph, node: torch._C.Node, values: dict[str, torch._C.Value]) -> torch._C.Value:
    """Insert, before node, the layer as calls of its submodules' methods and glue ops; the layer's output."""
    inputs = list(node.inputs())
    src, eps, mask, mask_type = inputs[0], inputs[_EPS], inputs[_MASK], inputs[_MASK_TYPE]
    norm_first, use_gelu = inputs[_NORM_FIRST].toIValue(), inputs[_USE_GELU].toIValue()

    def call(owner: str, *args: torch._C.Value) -> torch._C.Value:
        return _call(graph, values[owner], *args)

    with graph.insert_point_guard(node):
        x = call("norm1", src, eps) if norm_first else src
        x = graph.insert("aten::add", [call("self_attn", x, inputs[_EMBED_DIM], inputs[_NUM_HEADS], mask, mask_type),
                                       src])
        x = x if norm_first else call("norm1", x, eps)
        residual = x
        x = call("norm2", x, eps) if norm_first else x
        hidden = graph.insert("aten::gelu" if use_gelu else "aten::relu", [call("linear1", x)])
        x = graph.insert("aten::add", [call("linear2", hidden), residual])
        return x if norm_first else call("norm2", x, eps)
