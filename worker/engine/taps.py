"""Which layers the report lists, and how the probe sees each one's output: hooks (ONNX) or a graph rewrite
(TorchScript). Layers now include parameter-free ones (ReLU, Sigmoid, Add, Concat, ...); layout-only ops,
which move or relabel values without computing new ones, are not layers and are not tapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from worker.engine.activation_stats import Recorder
from worker.engine.load import Layer, LoadedNetwork
from worker.engine.torchscript_taps import Tapping, TapsUnavailable

ONNX_LAYOUT_OPS = frozenset({
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Gather", "Cast",
    "CastLike", "Constant", "ConstantOfShape", "Expand", "Range", "Slice", "Split", "Tile", "Dropout",
})
TORCHSCRIPT_LAYOUT_MODULES = frozenset({
    "Identity", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
})


@dataclass
class Taps:
    """Every layer of the report, input side first, and how to run the network so each output is observed."""

    layers: list[Layer]
    description: str  # for setup["layer_outputs"]: what was tapped, or "unavailable: <why>"
    tapped: int = 0
    attach: Callable[[torch.nn.Module, Recorder], Callable] | None = None  # returns the forward to call
    detach: list = field(default_factory=list)

    @contextmanager
    def forward(self, module: torch.nn.Module, recorder: Recorder) -> Iterator[Callable]:
        """The callable to run batches through while outputs are being recorded."""
        run = self.attach(module, recorder) if self.attach else module
        try:
            yield run
        finally:
            for handle in self.detach:
                handle.remove()
            self.detach.clear()


def taps_for(network: LoadedNetwork) -> Taps:
    """The layers and taps of a loaded network, by format."""
    if network.format == "onnx":
        return onnx_taps(network)
    return torchscript_taps(network)


def onnx_taps(network: LoadedNetwork) -> Taps:
    """Every node of the converted graph that computes on the data, except layout-only ones, plus every node
    owning parameters; hooks on submodules."""
    submodules = dict(network.module.named_modules())
    owned = {layer.name: layer.parameter_names for layer in network.layers}
    layers, targets = [], []
    for node in network.nodes:
        target = submodules.get(node.module_path)
        skipped = node.layout_only or node.op_type in ONNX_LAYOUT_OPS or not node.reads_data
        if node.name in owned or (target is not None and not skipped):
            layers.append(Layer(node.name, node.op_type, len(layers), owned.get(node.name, [])))
            targets.append(target)
    taps = Taps(layers, "", tapped=sum(t is not None for t in targets))
    taps.description = (f"forward hooks on {taps.tapped} converted ONNX nodes; layout-only ops and shape "
                        f"arithmetic skipped")
    taps.attach = lambda module, recorder: _hooked(module, targets, recorder, taps.detach)
    return taps


def _hooked(module: torch.nn.Module, targets: list, recorder: Recorder, handles: list) -> torch.nn.Module:
    for index, target in enumerate(targets):
        if target is not None:
            handles.append(target.register_forward_hook(_observer(recorder, index)))
    return module


def _observer(recorder: Recorder, index: int) -> Callable:
    def observe(_module, _inputs, output) -> None:
        recorder.observe(index, output)

    return observe


def torchscript_taps(network: LoadedNetwork) -> Taps:
    """Module calls of a TorchScript network via the graph rewrite; parameter layers only if it fails."""
    try:
        tapping = Tapping(network.module)
        layers, paths = _torchscript_layers(network, tapping)
        run = tapping.forward(paths)
    except TapsUnavailable as refused:
        return Taps(list(network.layers), f"unavailable: {refused}")
    taps = Taps(layers, "", tapped=sum(p in tapping.outputs for p in paths))
    taps.description = (f"TorchScript graph rewritten to observe the outputs of {taps.tapped} module calls as they "
                        "are produced, grouped by module scope; layout-only modules skipped")
    taps.attach = lambda _module, recorder: functools.partial(run, recorder.observe)
    return taps


def _torchscript_layers(network: LoadedNetwork, tapping: Tapping) -> tuple[list[Layer], list[str]]:
    owned = {_path_of(layer): layer.parameter_names for layer in network.layers}
    layers, paths = [], []
    for path, submodule in network.module.named_modules():
        if path in owned or _parameter_free_call(path, submodule, tapping):
            name = path or network.module.original_name
            layers.append(Layer(name, submodule.original_name, len(layers), owned.get(path, [])))
            paths.append(path)
    return layers, paths


def _path_of(layer: Layer) -> str:
    # The top module's own parameters form a layer named after its class; only theirs have no dotted prefix.
    return "" if "." not in layer.parameter_names[0] else layer.name


def _parameter_free_call(path: str, submodule, tapping: Tapping) -> bool:
    """A called module without parameters of its own whose output is not merely a child module's output."""
    found = tapping.outputs.get(path)
    if not path or found is None or submodule.original_name in TORCHSCRIPT_LAYOUT_MODULES:
        return False
    return found.producer == path


def observed_layers(layers: list[Layer], probes: list[list[dict]]) -> tuple[list[Layer], list[list[dict]]]:
    """Drop parameter-free layers whose output was never a float tensor (shape arithmetic); renumber depth."""
    kept = [(layer, rows) for layer, rows in zip(layers, probes) if layer.parameter_names or rows]
    renumbered = [Layer(layer.name, layer.kind, depth, layer.parameter_names) for depth, (layer, _) in enumerate(kept)]
    return renumbered, [rows for _, rows in kept]
