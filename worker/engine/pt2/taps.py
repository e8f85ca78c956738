"""Exported-program layers and taps: the outputs of module calls observed by nodes inserted into the graph while
the probe runs, grouped by module path as TorchScript's are; a weight layer never called but whose weight one op
reads, at that op (functional.py); the parameter-owning modules for the rest."""

from __future__ import annotations

import torch

from worker.engine.network import Layer, LoadedNetwork
from worker.engine.output_stats import Recorder
from worker.engine.pt2.calls import MODULES_META, CallOutput, call_outputs
from worker.engine.pt2.functional import functional_kind, functional_outputs, passed_on
from worker.engine.pt2.vocabulary import LAYOUT_MODULES
from worker.engine.taps import Taps


def layer_taps(network: LoadedNetwork) -> Taps:
    """Every parameter-owning module and every parameter-free module call computing its own output, in the
    network's module order; each call's output observed as it is produced."""
    outputs = call_outputs(network.module.graph)
    layers, nodes = [], []
    owned = {layer.name: layer.parameter_names for layer in network.layers}
    functional = functional_outputs(network.module.graph, set(owned) - set(outputs))
    outputs.update({**passed_on(outputs, functional), **functional})
    for path, kind in network.module.meta[MODULES_META]:
        name = path or kind
        kind = functional_kind(functional[path], kind) if path in functional else kind
        if name in owned or _parameter_free_call(path, kind, outputs):
            layers.append(Layer(name, kind, len(layers), owned.get(name, [])))
            nodes.append(outputs[path].node.name if path in outputs else None)
    taps = Taps(layers, "", tapped=sum(node is not None for node in nodes))
    taps.description = (f"exported program's graph observed at the outputs of {taps.tapped} module calls as they "
                        "are produced, grouped by module path; layout-only modules skipped")
    taps.attach = lambda module, recorder: _tapped(module, nodes, recorder, taps.detach)
    return taps


def _parameter_free_call(path: str, kind: str, outputs: dict[str, CallOutput]) -> bool:
    """A called module whose output is computed by its own code, not merely a child module's output."""
    found = outputs.get(path)
    return bool(path) and found is not None and kind not in LAYOUT_MODULES and found.producer == path


def _tapped(module: torch.fx.GraphModule, names: list[str | None], recorder: Recorder, handles: list):
    """The module with a call observing each named node's value inserted right after it, before any later
    in-place op can overwrite it; a handle in `handles` takes them out again."""
    by_name = {node.name: node for node in module.graph.nodes}

    def observe(value, tap: int) -> None:
        recorder.observe(tap, value)

    inserted = []
    for tap, name in enumerate(names):
        if name is not None:
            with module.graph.inserting_after(by_name[name]):
                inserted.append(module.graph.call_function(observe, (by_name[name], tap)))
    module.recompile()
    handles.append(_Removal(module, inserted))
    return module


class _Removal:
    """Takes the observing nodes out of the graph again (Taps.forward calls remove())."""

    def __init__(self, module: torch.fx.GraphModule, nodes: list[torch.fx.Node]):
        self._module, self._nodes = module, nodes

    def remove(self) -> None:
        for node in self._nodes:
            self._module.graph.erase_node(node)
        self._module.recompile()
