"""Which call of its module each node of an inlined TorchScript graph came from.

A module called several times (ALBERT's shared layer, any weight-tied loop) is one module path in the inlined
graph: the module hierarchy torch records names the instance, not the call. The calls are told apart here so
each gets its own row: `path` for the first call, `path#2`, `path#3`, ... for later ones, in the order they run.

A traced call is a contiguous run of nodes (constants aside, which the inliner pools at the front), and it
opens by reading its module's attributes (children, parameters) once each, so a call begins where a node of
the module follows a node outside it, or where the module reads an attribute again. The count this gives must
equal the calls the un-inlined graphs make (prim::CallMethod per call site); where it does not, no module is
split and each keeps one row, as before.
"""

from __future__ import annotations

from collections import Counter

import torch


def call_numbers(graph: torch._C.Graph, module, path_of, call_path) -> dict[torch._C.Node, dict[str, int]]:
    """Per top-level node (constants left out), the call of each enclosing module it belongs to; empty where
    the calls cannot be told apart. path_of(node) is the node's module path, call_path(path) translates a
    named_modules path into one."""
    numbers = _segmented(graph, path_of)
    counted = Counter()
    for calls in numbers.values():
        for scope, call in calls.items():
            counted[scope] = max(counted[scope], call)
    try:
        expected = _calls_made(module, call_path)
    except (AttributeError, RuntimeError, ValueError):  # a call the walk cannot follow: no splitting
        return {}
    if any(counted[scope] != expected.get(scope, 1) for scope in counted):
        return {}
    return numbers


def _segmented(graph: torch._C.Graph, path_of) -> dict[torch._C.Node, dict[str, int]]:
    calls: Counter = Counter()
    read: dict[str, set] = {}
    previous, numbers = None, {}
    for node in graph.nodes():
        if node.kind() == "prim::Constant":
            continue
        path = path_of(node)
        scopes = enclosing(path)
        opened = next((d for d, scope in enumerate(scopes)
                       if previous is None or not _inside(previous, scope) or _rereads(node, scope, read)), None)
        for scope in scopes[opened:] if opened is not None else []:
            calls[scope] += 1
            read[scope] = set()
        if node.kind() == "prim::GetAttr" and path:
            read[path].add(_attribute(node))
        numbers[node] = {scope: calls[scope] for scope in scopes}
        previous = path
    return numbers


def _rereads(node: torch._C.Node, scope: str, read: dict[str, set]) -> bool:
    return node.kind() == "prim::GetAttr" and _attribute(node) in read.get(scope, ())


def _attribute(node: torch._C.Node) -> tuple[str, str]:
    return node.inputsAt(0).debugName(), node.s("name")


def _calls_made(module, call_path) -> Counter:
    """Per module (as call_path names it), the calls its callers' un-inlined graphs make, at top level."""
    counts: Counter = Counter()

    def visit(owner, method: str, path: str) -> None:
        for node in getattr(owner, method).graph.nodes():
            if node.kind() == "prim::CallMethod":
                relative = _self_attribute_path(node.inputsAt(0))
                child, full = owner, ".".join(p for p in (path, relative) if p)
                for part in relative.split("."):
                    child = getattr(child, part)
                counts[call_path(full)] += 1
                visit(child, node.s("name"), full)

    visit(module, "forward", "")
    return counts


def _self_attribute_path(value: torch._C.Value) -> str:
    names, node = [], value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.input().node()
    if node.kind() != "prim::Param" or not names:
        raise ValueError("a module value that is not an attribute of self")
    return ".".join(reversed(names))


def enclosing(path: str) -> list[str]:
    """The module paths a node at path is inside, outermost first: 'a.b' -> ['a', 'a.b']."""
    parts = path.split(".") if path else []
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _inside(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope + ".")


def top_level(node: torch._C.Node) -> torch._C.Node:
    """The top-level node a node sits in (itself, or the If or Loop holding it)."""
    owner = node.owningBlock().owningNode()
    while owner is not None:
        node, owner = owner, owner.owningBlock().owningNode()
    return node
