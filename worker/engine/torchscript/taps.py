"""TorchScript layers and taps: module calls observed through a rewrite of the graph, grouped by module scope;
the parameter-owning modules alone where the rewrite is not possible or fails when run. A module called several
times has a row per call (`path`, then `path#2`, ...) placed where the call runs, each listing the module's
parameters: the diagnosis sees one weight layer per call, the network's total counts them once."""

from __future__ import annotations

import functools

from worker.engine.network import Layer, LoadedNetwork
from worker.engine.taps import Taps, base_path, call_name
from worker.engine.torchscript.normalization import batch_statistics_edit
from worker.engine.torchscript.tapping import Tapping, TapsUnavailable

LAYOUT_MODULES = frozenset({
    "Identity", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
})



def layer_taps(network: LoadedNetwork) -> Taps:
    """Module calls of a TorchScript network via the graph rewrite; parameter layers only if it fails."""
    try:
        edit = batch_statistics_edit(network.batch_statistics, network.module.original_name)
        tapping = Tapping(network.module, edit)
        layers, paths = _torchscript_layers(network, tapping)
        run = tapping.forward(paths)
    except TapsUnavailable as refused:
        return parameter_layers(network, f"unavailable: {refused}")
    taps = Taps(layers, "", tapped=sum(p in tapping.outputs for p in paths),
                fallback=parameter_layers(network, "unavailable: the rewritten graph failed ({why})"))
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
    return _with_later_calls(layers, paths, tapping)


def _with_later_calls(layers: list[Layer], paths: list[str], tapping: Tapping) -> tuple[list[Layer], list[str]]:
    """Each later call of a listed module inserted after the last row whose output is produced before its own."""
    rows = [(layer, path) for layer, path in zip(layers, paths)]
    listed = {path: layer for layer, path in rows}
    later = sorted((found.position, key) for key, found in tapping.outputs.items() if base_path(key)[1] > 1)
    for position, key in later:
        path, call = base_path(key)
        if path in listed:
            first = listed[path]
            row = Layer(call_name(first.name, call), first.kind, 0, first.parameter_names)
            rows.insert(_after_last_before(rows, position, tapping), (row, key))
    return ([Layer(layer.name, layer.kind, depth, layer.parameter_names) for depth, (layer, _) in enumerate(rows)],
            [path for _, path in rows])


def _after_last_before(rows: list[tuple[Layer, str]], position: int, tapping: Tapping) -> int:
    earlier = [i for i, (_, path) in enumerate(rows) if path in tapping.outputs
               and tapping.outputs[path].position < position]
    return earlier[-1] + 1 if earlier else len(rows)


def _path_of(layer: Layer) -> str:
    # The top module's own parameters form a layer named after its class; only theirs have no dotted prefix.
    return "" if "." not in layer.parameter_names[0] else layer.name


def _parameter_free_call(path: str, submodule, tapping: Tapping) -> bool:
    """A called module without parameters of its own whose output is not merely a child module's output."""
    found = tapping.outputs.get(path)
    if not path or found is None or submodule.original_name in LAYOUT_MODULES:
        return False
    return found.producer == path


def parameter_layers(network: LoadedNetwork, description: str) -> Taps:
    """The parameter-owning modules, none of them tapped: what the probe still measures without the rewrite."""
    return Taps(list(network.layers), description)
