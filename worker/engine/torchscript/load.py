"""Load a TorchScript artifact and describe its inputs and parameter-owning submodules."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import torch

from gradaudit.errors import AuditError, one_line
from worker.engine.network import InputSpec, Layer, LoadedNetwork
from worker.engine.torchscript.fastpaths import unfuse_fast_paths
from worker.engine.torchscript.normalization import attribute_path, batch_norm_layers
from worker.engine.torchscript.screen import screen_archive, screen_module
from worker.engine.torchscript.structure import structure
from worker.engine.torchscript.token_ids import embedding_weight
from worker.engine.torchscript.vocabulary import OP_COUNT_NAMES, ROLES


def load_torchscript(path: Path) -> LoadedNetwork:
    """Load a TorchScript archive into a LoadedNetwork (inputs have no declared shapes), once nothing of it that
    would run is outside the operator allowlist (screen.py)."""
    screen_archive(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice, once per load
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise AuditError("invalid_torchscript", f"not a loadable TorchScript archive ({one_line(exc, 200)})") from None
    # Before anything inlines the graphs (torch keeps a method's body as first inlined); the allowlist then sees
    # what will run.
    unfuse_fast_paths(module)
    screen_module(module)
    module.eval()
    graph = module.inlined_graph
    return LoadedNetwork(
        module=module,
        format="torchscript",
        inputs=_input_specs(module, graph),
        layers=_layers(module),
        op_counts=dict(Counter(OP_COUNT_NAMES[n.kind()] for n in graph.nodes() if n.kind() in OP_COUNT_NAMES)),
        roles=ROLES,
        structure=structure(graph),
        batch_norms=batch_norm_layers(module),
    )


def _input_specs(module: torch.jit.ScriptModule, graph: torch._C.Graph) -> list[InputSpec]:
    # The first schema argument is the module itself, whatever its author called it.
    names = [argument.name for argument in module.forward.schema.arguments[1:]]
    values = list(graph.inputs())[1:]
    return [_input_spec(name, value, module) for name, value in zip(names, values)]


def _input_spec(name: str, value: torch._C.Value, module: torch.jit.ScriptModule) -> InputSpec:
    table = _embedding_table(value, module)
    if table is None:
        return InputSpec(name, None, None)
    return InputSpec(name, None, torch.int64, int(table.shape[0]))


def _embedding_table(value: torch._C.Value, module: torch.jit.ScriptModule) -> torch.Tensor | None:
    """The embedding weight this input's entries index, if any: such an input holds token ids."""
    weight = embedding_weight(value)
    return None if weight is None else dict(module.named_parameters()).get(attribute_path(weight))


def _layers(module: torch.jit.ScriptModule) -> list[Layer]:
    layers: list[Layer] = []
    for path, submodule in module.named_modules():
        own = [name for name, _ in submodule.named_parameters(recurse=False)]
        if own:
            name = path or module.original_name
            qualified = [f"{path}.{p}" if path else p for p in own]
            layers.append(Layer(name, submodule.original_name, len(layers), qualified))
    return layers
