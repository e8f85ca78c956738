"""Module calls in an exported program's graph. Every node carries the stack of module calls it came from
(`nn_module_stack`, e.g. ('layer1.0.conv1', 'torch.nn.modules.conv.Conv2d') innermost); a module call's output is
the last node of that call whose value is used outside it, as for TorchScript's module hierarchy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODULES_META = "gradaudit_modules"  # GraphModule.meta key: [(path, class name)] in named_modules() order


@dataclass(frozen=True)
class CallOutput:
    """The node whose value leaves one module call, and the module path of the call that produced it."""

    node: torch.fx.Node
    producer: str


def module_path(node: torch.fx.Node) -> str | None:
    """The path of the innermost module call a node belongs to ('' for the root's own code); None if unknown."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    return list(stack.values())[-1][0]


def module_classes(graph: torch.fx.Graph) -> dict[str, str]:
    """Every called module's class name, by path, from the nodes' module stacks."""
    classes = {}
    for node in graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            classes.setdefault(path, _class_name(kind))
    return classes


def call_outputs(graph: torch.fx.Graph) -> dict[str, CallOutput]:
    """The output of each called module, by path: the last node of its call used outside it."""
    outputs: dict[str, CallOutput] = {}
    for node in graph.nodes:
        path = module_path(node)
        if node.op != "call_function" or path is None or not _holds_tensor(node):
            continue
        for scope in _enclosing(path):
            if any(not _within(user, scope) for user in node.users):
                outputs[scope] = CallOutput(node, path)
    return outputs


def _class_name(kind) -> str:
    name = kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))
    return name.rsplit(".", 1)[-1]


def _enclosing(path: str) -> list[str]:
    parts = path.split(".") if path else []
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _within(node: torch.fx.Node, scope: str) -> bool:
    path = module_path(node)
    if node.op == "output" or path is None:
        return False
    return path == scope or path.startswith(scope + ".")


def _holds_tensor(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return isinstance(value, torch.Tensor)
