"""The outputs of a TorchScript network's module calls, by rewriting its inlined graph to return them too.

ScriptModules refuse forward hooks, and fx and torch.export refuse ScriptModules, so the only way to see
intermediate tensors is to edit the graph. That needs private torch._C functions; every use of them is in
this module, and any failure surfaces as TapsUnavailable so the audit can fall back to parameter statistics.

A node belongs to the module whose call it came from (its module hierarchy after inlining, e.g. "layers.0"
for nodes of `self.layers[0](x)`). A module call's output is the tensor that leaves its nodes: the first
tensor output of the last top-level node of that call that is used outside it. Only top-level nodes are
tapped, so a call made inside an `if` or a loop of scripted code has no tap. A module called several times has
one output per call, `path` for the first and `path#k` for the k-th (calls.py). A weight layer never called as
a module whose weight one op reads (Swin's qkv, through F.linear) has that op's output (functional.py).

A tap is a call to the op gradaudit::observe inserted right after the node producing the tensor. Its Python
kernel hands the tensor to the observer of the running forward at that moment, before any later in-place op
(relu_, add_) overwrites it, and while nothing but the network's own autograd holds it; in-place ops stay in
place, so the tapped network needs no more memory than the plain one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradaudit.errors import one_line
from worker.engine.taps import base_path, call_name
from worker.engine.torchscript.calls import call_numbers, enclosing, top_level
from worker.engine.torchscript.functional import functional_outputs

_SEGMENT = re.compile(r"([^.()]*)\(([^()]*)\)")


class TapsUnavailable(Exception):
    """The graph could not be analysed or rewritten; the message says why."""


@dataclass(frozen=True)
class ModuleOutput:
    """The tensor leaving one module call, the module path of the node that produced it, and that node's
    position among the graph's top-level nodes (the order calls run in)."""

    value: torch._C.Value
    producer: str
    position: int = 0


class Tapping:
    """A network's inlined graph with the output of every top-level module call located."""

    def __init__(self, module: torch.jit.ScriptModule, edit: Callable[[torch._C.Graph], None] = lambda graph: None):
        try:
            self._graph = module.inlined_graph  # a fresh copy each time: editing it leaves the module alone
            edit(self._graph)
            self.outputs = _by_module_name(_module_outputs(self._graph, module), module)
            self.outputs.update(_functional_outputs(self._graph, module, self.outputs))
        except Exception as exc:
            raise TapsUnavailable(f"the graph could not be analysed ({one_line(exc, 200)})") from None
        self._module = module

    def forward(self, paths: list[str]) -> Callable[..., object]:
        """A function of (observe, *inputs) running the network and calling observe(i, tensor) as the output of
        paths[i] is produced; it returns the network's outputs. Paths with no top-level output are never observed.

        The tensor is handed over before later in-place ops run, so observe must reduce or copy it then. This
        edits the Tapping's graph: call it once per Tapping; the function it returns may run many times.
        """
        tapped = [(i, self.outputs[path].value) for i, path in enumerate(paths) if path in self.outputs]
        try:
            for position, value in tapped:
                _insert_observe(self._graph, value, position)
            function = torch._C._create_function_from_graph("forward_with_taps", self._graph)
        except Exception as exc:
            raise TapsUnavailable(f"the graph could not be rewritten ({one_line(exc, 200)})") from None
        module = self._module

        def run(observe: Callable[[int, torch.Tensor], None], *inputs):
            _running.observe = observe
            try:
                # Optimised execution fuses nodes into differentiable subgraphs whose intermediate outputs get
                # no gradient of their own; the plain interpreter keeps one autograd node per op.
                with torch.jit.optimized_execution(False):
                    return function(module._c, *inputs)
            finally:
                _running.observe = None

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


def _module_outputs(graph: torch._C.Graph, module) -> dict[str, ModuleOutput]:
    """The output of every top-level module call, keyed by call name (module hierarchy paths)."""
    calls = call_numbers(graph, module, module_path, lambda path: _call_path(module, path))
    outputs: dict[str, ModuleOutput] = {}
    for position, node in enumerate(graph.nodes()):
        path = module_path(node)
        for scope in enclosing(path):
            call = calls.get(node, {}).get(scope, 1)
            value = _first_escaping_tensor(node, scope, calls, call)
            if value is not None:
                outputs[call_name(scope, call)] = ModuleOutput(value, path, position)
    return outputs


def _functional_outputs(graph: torch._C.Graph, module, outputs: dict[str, ModuleOutput]) -> dict[str, ModuleOutput]:
    """Weight layers never called as modules, tapped at the one op reading their weight (functional.py)."""
    owners = {name.rpartition(".")[0] for name, _ in module.named_parameters()}
    found = functional_outputs(graph, owners - set(outputs))
    tapped = {path: ModuleOutput(value, path, position) for path, (value, position) in found.items()}
    # A caller whose output is that op's output passes the layer's output on, as it would a called child's.
    layer_of = {output.value.debugName(): path for path, output in tapped.items()}
    passed = {name: ModuleOutput(output.value, layer_of[output.value.debugName()], output.position)
              for name, output in outputs.items() if output.value.debugName() in layer_of}
    return {**passed, **tapped}


def _call_of(node: torch._C.Node, scope: str, calls: dict) -> int:
    return calls.get(top_level(node), {}).get(scope, 1)


def _by_module_name(outputs: dict[str, ModuleOutput], module) -> dict[str, ModuleOutput]:
    """The outputs keyed by named_modules() path. A module hierarchy leaves out ModuleList and ModuleDict, which
    are indexed but never called: a TransformerEncoder's encoder.layers.0 is encoder.0 there."""
    names = {}
    for path, _ in module.named_modules():
        names.setdefault(_call_path(module, path), path)
    renamed = {}
    for name, found in outputs.items():
        path, call = base_path(name)
        if path in names:
            producer = names.get(found.producer, found.producer)
            renamed[call_name(names[path], call)] = ModuleOutput(found.value, producer, found.position)
    return renamed


def _call_path(module, path: str) -> str:
    parts, kept = path.split(".") if path else [], []
    for part in parts:
        module = getattr(module, part)
        if module.original_name not in _NEVER_CALLED:
            kept.append(part)
    return ".".join(kept)


_NEVER_CALLED = frozenset({"ModuleList", "ModuleDict"})


def _first_escaping_tensor(node: torch._C.Node, scope: str, calls: dict, call: int) -> torch._C.Value | None:
    for value in node.outputs():
        if any(not _within(use.user, scope, calls, call) for use in value.uses()):
            tensor = _tensor_in(value)
            if tensor is not None:
                return tensor
    return None


def _within(node: torch._C.Node, scope: str, calls: dict, call: int) -> bool:
    """Whether node is part of the given call of the module at scope."""
    if node.kind() == "prim::Return":
        return False
    path = module_path(node)
    return (path == scope or path.startswith(scope + ".")) and _call_of(node, scope, calls) == call


def _tensor_in(value: torch._C.Value) -> torch._C.Value | None:
    """The value if it is a tensor; for a tuple built in the graph, its first tensor element."""
    if value.type().kind() == "TensorType":
        return value
    producer = value.node()
    if producer.kind() == "prim::TupleConstruct":
        return next((t for t in map(_tensor_in, producer.inputs()) if t is not None), None)
    return None


_running = threading.local()  # the observer of the forward running on this thread

_OPS = torch.library.Library("gradaudit", "DEF")
_OPS.define("observe(Tensor value, int tap) -> ()")


def _observe(value: torch.Tensor, tap: int) -> None:
    observe = getattr(_running, "observe", None)
    if observe is not None:
        observe(tap, value)


# Above autograd, so the kernel sees the tensor as the graph holds it and can register gradient hooks on it.
_OPS.impl("observe", _observe, "CompositeImplicitAutograd")


def _insert_observe(graph: torch._C.Graph, value: torch._C.Value, tap: int) -> None:
    """Insert gradaudit::observe(value, tap) right after the node producing value."""
    constant = graph.insertConstant(tap)
    producer = value.node()
    if producer.kind() == "prim::Param":  # a graph input: observe it before anything else runs
        constant.node().moveBefore(next(iter(graph.nodes())))
    else:
        constant.node().moveAfter(producer)
    call = graph.create("gradaudit::observe", [value, constant], 0)
    call.insertAfter(constant.node())
