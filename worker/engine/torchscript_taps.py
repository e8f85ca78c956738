"""The outputs of a TorchScript network's module calls, by rewriting its inlined graph to return them too.

ScriptModules refuse forward hooks, and fx and torch.export refuse ScriptModules, so the only way to see
intermediate tensors is to edit the graph. That needs private torch._C functions; every use of them is in
this module, and any failure surfaces as TapsUnavailable so the audit can fall back to parameter statistics.

A node belongs to the module whose call it came from (its module hierarchy after inlining, e.g. "layers.0"
for nodes of `self.layers[0](x)`). A module call's output is the tensor that leaves its nodes: the first
tensor output of the last top-level node of that call that is used outside it. Only nodes at the top level
of the graph can be returned, so a call made inside an `if` or a loop of scripted code has no tap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from worker.engine.errors import one_line

_SEGMENT = re.compile(r"([^.()]*)\(([^()]*)\)")


class TapsUnavailable(Exception):
    """The graph could not be analysed or rewritten; the message says why."""


@dataclass(frozen=True)
class ModuleOutput:
    """The tensor leaving one module call, and the module path of the node that produced it."""

    value: torch._C.Value
    producer: str


class Tapping:
    """A network's inlined graph with the output of every top-level module call located."""

    def __init__(self, module: torch.jit.ScriptModule):
        try:
            self._graph = module.inlined_graph  # a fresh copy each time: editing it leaves the module alone
            # In-place ops (relu_) would make a call's output alias the next call's, so make them out-of-place.
            torch._C._jit_pass_remove_mutation(self._graph)
            self.outputs = _module_outputs(self._graph)
        except Exception as exc:
            raise TapsUnavailable(f"the graph could not be analysed ({one_line(exc, 200)})") from None
        self._module = module

    def forward(self, paths: list[str]) -> Callable[..., tuple[object, list[torch.Tensor | None]]]:
        """A function of the network's inputs giving (its outputs, the output tensor of each path or None).

        It edits this Tapping's graph, so call it once per Tapping; the function it returns may run many times.
        """
        tapped = [path for path in paths if path in self.outputs]
        try:
            function = _returning_also(self._graph, [self.outputs[path].value for path in tapped])
        except Exception as exc:
            raise TapsUnavailable(f"the graph could not be rewritten ({one_line(exc, 200)})") from None
        position = {path: 1 + i for i, path in enumerate(tapped)}
        module = self._module

        def run(*inputs):
            # Optimised execution fuses nodes into differentiable subgraphs whose intermediate outputs get no
            # gradient of their own; the plain interpreter keeps one autograd node per op.
            with torch.jit.optimized_execution(False):
                results = function(module._c, *inputs)
            return results[0], [results[position[p]] if p in position else None for p in paths]

        return run


def module_path(node: torch._C.Node) -> str:
    """The path of the module whose call produced this node ('' for the top module's own code)."""
    names = []
    for name, _type in _SEGMENT.findall(node.getModuleHierarchy()):
        if name == "UNKNOWN_INSTANCE":  # a free function called by the module: still that module's call
            break
        if name != "SELF":  # a method of the same module (self._block(x))
            names.append(name)
    return ".".join(names)


def _module_outputs(graph: torch._C.Graph) -> dict[str, ModuleOutput]:
    outputs: dict[str, ModuleOutput] = {}
    for node in graph.nodes():
        path = module_path(node)
        for scope in _enclosing(path):
            value = _first_escaping_tensor(node, scope)
            if value is not None:
                outputs[scope] = ModuleOutput(value, path)
    return outputs


def _enclosing(path: str) -> list[str]:
    parts = path.split(".") if path else []
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _first_escaping_tensor(node: torch._C.Node, scope: str) -> torch._C.Value | None:
    for value in node.outputs():
        if any(not _within(use.user, scope) for use in value.uses()):
            tensor = _tensor_in(value)
            if tensor is not None:
                return tensor
    return None


def _within(node: torch._C.Node, scope: str) -> bool:
    if node.kind() == "prim::Return":
        return False
    path = module_path(node)
    return path == scope or path.startswith(scope + ".")


def _tensor_in(value: torch._C.Value) -> torch._C.Value | None:
    """The value if it is a tensor; for a tuple built in the graph, its first tensor element."""
    if value.type().kind() == "TensorType":
        return value
    producer = value.node()
    if producer.kind() == "prim::TupleConstruct":
        return next((t for t in map(_tensor_in, producer.inputs()) if t is not None), None)
    return None


def _returning_also(graph: torch._C.Graph, taps: list[torch._C.Value]) -> torch._C.ScriptFunction:
    """A function of (module, *inputs) returning the tuple (original output, *taps)."""
    original = list(graph.outputs())
    if len(original) != 1:
        raise ValueError(f"forward has {len(original)} graph outputs, expected 1")
    values = [original[0], *taps]
    bundle = graph.create("prim::TupleConstruct", values)
    graph.appendNode(bundle)
    bundle.output().setType(torch._C.TupleType([value.type() for value in values]))
    graph.eraseOutput(0)
    graph.registerOutput(bundle.output())
    return torch._C._create_function_from_graph("forward_with_taps", graph)
