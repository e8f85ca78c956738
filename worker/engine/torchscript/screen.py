"""What a TorchScript archive may run, checked before anything of it runs.

Two moments run an archive's code. Loading: torch.jit.load unpickles the module with torch's own unpickler,
which builds only tensors, containers and the archive's own TorchScript classes, and calls a class's scripted
`__setstate__` while it does (a native one for registered `torch.classes`). So the archive's records are read
first, with the same reader torch.jit.load uses, and an archive whose code or pickles name `__setstate__` or a
registered class is refused unloaded. Running: every method and forward hook of every module type is walked (a
call of a submodule's method with that submodule, a graph calling a function or a class's method inlined) and
each node's kind is checked against the allowlist (worker/engine/allowed_operators.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from pathlib import Path

import torch

from gradaudit.errors import AuditError, one_line
from worker.engine.allowed_operators import refuse_unsafe_operators

# Records torch.jit.load never reads as code or as a pickle: tensor bytes, and extra files it only hands back.
_INERT_RECORD = re.compile(r"(\.data/|data/|constants/|extra/)[^/]*")
# Names that make torch.jit.load run code while unpickling: a scripted __setstate__, a registered C++ class.
_RUNS_AT_LOAD = re.compile(rb"__setstate__|torch\.classes")


def screen_archive(path: Path) -> None:
    """AuditError('unsafe_operator') if loading the archive would run any of its code; nothing is loaded."""
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        records = [name for name in reader.get_all_records() if not _INERT_RECORD.fullmatch(name)]
        found = {name: _RUNS_AT_LOAD.search(bytes(reader.get_record(name))) for name in records}
    except Exception:  # noqa: BLE001 - not an archive torch reads: torch.jit.load refuses it with its own message
        return
    for name, match in found.items():
        if match:
            what = match.group().decode()
            raise AuditError("unsafe_operator", f"the archive's {name} names '{what}', which torch.jit.load would "
                                                f"run while loading it; gradaudit does not load such archives")


def screen_module(module: torch.jit.ScriptModule) -> None:
    """AuditError('unsafe_operator') naming every operator outside the allowlist that any method may call."""
    try:
        found = module_operators(module)
    except Exception as exc:  # noqa: BLE001 - a graph torch cannot copy or inline is not one gradaudit runs
        raise AuditError("invalid_torchscript", f"its code could not be inspected ({one_line(exc, 200)})") from None
    refuse_unsafe_operators(found)


def module_operators(module: torch.jit.ScriptModule) -> dict[str, str]:
    """Every node kind that any method or hook of the module and its submodules may run, with where it is first
    found ('layers.0.helper')."""
    by_type: dict[str, tuple[str, torch._C.ScriptModule]] = {}
    for path, submodule in module.named_modules():  # modules of one type share their methods' graphs
        by_type.setdefault(submodule._c._type().qualified_name(), (path, submodule._c))
    found: dict[str, str] = {}
    for path, submodule in by_type.values():
        for name, graph in _graphs(submodule):
            for kind in _operators(graph, by_type.keys()):
                found.setdefault(kind, f"{path}.{name}" if path else name)
    return found


def _operators(graph: torch._C.Graph, module_types: Collection[str]) -> Iterator[str]:
    """The node kinds of a method: a call of a submodule's method is walked with that submodule, so only a graph
    calling anything else (a function, a method of a class or an interface) is walked inlined, and what inlining
    cannot resolve stays a prim::CallMethod or prim::CallFunction, which the allowlist refuses."""
    if any(_opaque_call(node, module_types) for node in _nodes(graph)):
        graph = _inlined(graph)
    for node in _nodes(graph):
        if not _submodule_call(node, module_types):
            yield node.kind()


def _submodule_call(node: torch._C.Node, module_types: Collection[str]) -> bool:
    if node.kind() != "prim::CallMethod":
        return False
    kind = node.inputsAt(0).type()
    return not kind.is_interface_type() and kind.qualified_name() in module_types


def _opaque_call(node: torch._C.Node, module_types: Collection[str]) -> bool:
    return node.kind() == "prim::CallFunction" or (node.kind() == "prim::CallMethod"
                                                    and not _submodule_call(node, module_types))


def _graphs(module: torch._C.ScriptModule) -> Iterator[tuple[str, torch._C.Graph]]:
    for name in module._method_names():
        yield name, module._get_method(name).graph
    for hook in [*module._get_forward_pre_hooks(), *module._get_forward_hooks()]:
        yield hook.name, hook.graph


def _inlined(graph: torch._C.Graph) -> torch._C.Graph:
    copy = graph.copy()  # inlining edits the graph: the module's own stays as it was
    torch._C._jit_pass_inline(copy)
    return copy


def _nodes(block) -> Iterator[torch._C.Node]:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)
