"""ONNX layers and taps: every converted node that computes on the data, observed by forward hooks."""

from __future__ import annotations

from worker.engine.network import Layer, LoadedNetwork
from worker.engine.onnx.graph import LAYOUT_OPS
from worker.engine.taps import Taps, hooked


def layer_taps(network: LoadedNetwork) -> Taps:
    """Every node of the converted graph that computes on the data, except layout-only ones, plus every node
    owning parameters; hooks on submodules."""
    submodules = dict(network.module.named_modules())
    owned = {layer.name: layer.parameter_names for layer in network.layers}
    layers, targets = [], []
    for node in network.nodes:
        target = submodules.get(node.module_path)
        skipped = node.layout_only or node.op_type in LAYOUT_OPS or not node.reads_data
        if node.name in owned or (target is not None and not skipped):
            layers.append(Layer(node.name, node.op_type, len(layers), owned.get(node.name, [])))
            targets.append(target)
    taps = Taps(layers, "", tapped=sum(t is not None for t in targets))
    taps.description = (f"forward hooks on {taps.tapped} converted ONNX nodes; layout-only ops and shape "
                        f"arithmetic skipped")
    taps.attach = lambda module, recorder: hooked(module, targets, recorder, taps.detach)
    return taps
