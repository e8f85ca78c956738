"""Load a torch.export archive (.pt2) into a LoadedNetwork: read it without unpickling (archive.py), screen the
program (screen.py), deserialize it with torch, and unlift it into a GraphModule whose parameters carry their
state-dict names (features.0.weight), as the network's own modules would."""

from __future__ import annotations

import operator
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch._export.serde import schema
from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

from gradaudit.errors import AuditError, one_line
from worker.engine.network import InputSpec, Layer, LoadedNetwork
from worker.engine.normalization import BatchNormLayer, has_initial_statistics
from worker.engine.pt2.archive import invalid, read_archive
from worker.engine.pt2.calls import MODULES_META, module_classes
from worker.engine.pt2.screen import screen_program
from worker.engine.pt2.structure import structure
from worker.engine.pt2.vocabulary import OP_COUNT_NAMES, ROLES, op_name

# Ops an integer input may pass through on its way to an embedding table (GPT-2 views its token ids first).
_VIEWS = frozenset({"aten::view", "aten::reshape", "aten::flatten", "aten::unsqueeze", "aten::squeeze",
                    "aten::contiguous", "aten::_unsafe_view"})


def load_exported_program(path: Path) -> LoadedNetwork:
    """Load a .pt2 archive into a LoadedNetwork with its inputs' shapes and dtypes from the program's signature."""
    program = _deserialized(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = program.module()
    except Exception as exc:
        raise invalid(f"the program could not be unlifted into a module ({one_line(exc, 200)})") from None
    modules = _modules(program, module)
    module.meta[MODULES_META] = modules
    return LoadedNetwork(
        module=module,
        format="pt2",
        inputs=_input_specs(module, _argument_names(program)),
        layers=_layers(module, modules),
        op_counts=dict(Counter(OP_COUNT_NAMES[n] for n in map(op_name, module.graph.nodes) if n in OP_COUNT_NAMES)),
        roles=ROLES,
        structure=structure(module.graph),
        batch_norms=_batch_norms(module, modules),
    )


def _deserialized(path: Path) -> torch.export.ExportedProgram:
    contents = read_archive(path)
    program = screen_program(contents.program)
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        return ExportedProgramDeserializer().deserialize(serialized, contents.state_dict, contents.constants, None)
    except AuditError:
        raise
    except Exception as exc:
        raise invalid(f"the program could not be deserialized ({one_line(exc, 200)})") from None


def _modules(program: torch.export.ExportedProgram, module: torch.fx.GraphModule) -> list[tuple[str, str]]:
    """(path, class name) of every module, in the order the network registered them (its module call graph)."""
    classes = module_classes(module.graph)
    order = [entry.fqn for entry in program.module_call_graph]
    owners = [name.rpartition(".")[0] for name, _ in module.named_parameters()]
    paths = list(dict.fromkeys([*order, *owners]))
    return [(path, classes.get(path, "Module")) for path in paths]


def _layers(module: torch.fx.GraphModule, modules: list[tuple[str, str]]) -> list[Layer]:
    by_owner: dict[str, list[str]] = {}
    for name, _ in module.named_parameters():
        by_owner.setdefault(name.rpartition(".")[0], []).append(name)
    layers: list[Layer] = []
    for path, kind in modules:
        if path in by_owner:
            layers.append(Layer(path or kind, kind, len(layers), by_owner[path]))
    return layers


def _batch_norms(module: torch.fx.GraphModule, modules: list[tuple[str, str]]) -> list[BatchNormLayer]:
    buffers = dict(module.named_buffers())
    found = []
    for path, kind in modules:
        prefix = f"{path}." if path else ""
        mean, var = buffers.get(prefix + "running_mean"), buffers.get(prefix + "running_var")
        if mean is not None and var is not None:
            found.append(BatchNormLayer(path or kind, has_initial_statistics(mean, var)))
    return found


def _argument_names(program: torch.export.ExportedProgram) -> list[str]:
    """The names of forward's arguments as the network declares them ('input' for nn.Sequential)."""
    root = next((entry for entry in program.module_call_graph if entry.fqn == ""), None)
    signature = root.signature if root is not None else None
    return list(signature.forward_arg_names or []) if signature is not None else []


def _input_specs(module: torch.fx.GraphModule, names: list[str]) -> list[InputSpec]:
    placeholders = module.graph.find_nodes(op="placeholder")
    if len(names) != len(placeholders):
        names = [node.name for node in placeholders]  # inputs nested in containers: the flattened names
    return [_input_spec(name, node, module) for name, node in zip(names, placeholders)]


def _input_spec(name: str, node: torch.fx.Node, module: torch.fx.GraphModule) -> InputSpec:
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        raise AuditError("input_shape_required", f"input '{name}' is not a tensor; only tensor inputs are probed")
    dims = [dim if isinstance(dim, int) else None for dim in value.shape]
    table = None if value.dtype.is_floating_point else _embedding_table(node, module)
    return InputSpec(name, dims, value.dtype, int(table.shape[0]) if table is not None else None)


def _embedding_table(node: torch.fx.Node, module: torch.fx.GraphModule) -> torch.Tensor | None:
    """The embedding weight this input indexes, directly or through views: such an input holds token ids."""
    for user in node.users:
        name = op_name(user)
        if name == "aten::embedding" and user.args[1] is node and user.args[0].op == "get_attr":
            return operator.attrgetter(user.args[0].target)(module)
        if name in _VIEWS and user.args[0] is node:
            found = _embedding_table(user, module)
            if found is not None:
                return found
    return None
