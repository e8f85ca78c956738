"""The network every edit starts from, as one ONNX graph with its weights in memory: the uploaded ONNX file as the
audit read it, or a TorchScript/.pt2 network exported to ONNX (the recommendations' layer names mapped onto the
exported graph's nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from worker.engine.batches import ProbeBatches
from worker.engine.onnx.external_data import external_tensors, load_into_proto
from worker.engine.onnx.read import read_onnx
from worker.remedies.graph import NotApplicable


@dataclass
class BaseNetwork:
    """The graph edits copy, how it was obtained (`route`), report layer name -> graph node name, and the probe
    batches BatchNorm calibration runs."""

    proto: onnx.ModelProto
    route: str
    batches: ProbeBatches
    names: dict[str, str] = field(default_factory=dict)  # empty: the report names graph nodes already

    def in_graph_names(self, recommendation: dict) -> dict:
        """The recommendation with its layers (and per-layer edit entries) named as in the graph."""
        if not self.names:
            return recommendation
        named = recommendation.get("layers", [])
        found = [name for name in named if name in self.names]
        if named and not found:
            raise NotApplicable(f"layer {named[0]!r} could not be found in the network exported to ONNX")
        # A layer the exporter folded away (a BatchNorm into its convolution) has no node of its own; the edit
        # goes on with the layers that do.
        edit = dict(recommendation.get("edit", {}))
        if "inits" in edit:
            edit["inits"] = {self.names[name]: family for name, family in edit["inits"].items() if name in self.names}
        return {**recommendation, "layers": [self.names[name] for name in found], "edit": edit}

    def in_report_words(self, text: str) -> str:
        """A patch written with graph node names, in the report's layer names."""
        for report, node in self.names.items():
            text = text.replace(f"'{node}'", f"'{report}'")
        return text

    def calibrate(self, proto: onnx.ModelProto, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Running mean and variance of the named BatchNormalization nodes, measured as training measures them:
        the network converted once, those nodes normalising with each batch's statistics and averaging them
        (momentum None) over the probe batches, in one forward pass per batch."""
        import torch

        from worker.engine.onnx.convert import batch_norm_module, convert_onnx

        module = convert_onnx(proto).module.eval()  # converts a copy; proto stays as it is
        norms = {}
        for node in module.onnx_model.graph.node:
            if node.name in names:
                norm = batch_norm_module(module, node)
                norm.reset_running_stats()
                norm.momentum = None  # a cumulative average over the batches
                norm.train()
                norms[node.name] = norm
        with torch.no_grad():
            for inputs in self.batches.inputs:
                module(*inputs.values())
        return {name: (norm.running_mean.numpy().copy(), norm.running_var.numpy().copy())
                for name, norm in norms.items()}


def onnx_base(path: Path, external_data_dir: Path | None, batches: ProbeBatches) -> BaseNetwork:
    """An uploaded ONNX network as the audit read it (checked, size-bounded, folded BatchNorm restored), with
    every external weight read into the graph."""
    graph = read_onnx(path, external_data_dir)
    proto = graph.proto
    for tensor in list(external_tensors(proto.graph)):
        load_into_proto(tensor)
    return BaseNetwork(proto, "the uploaded ONNX graph", batches)


def exported_base(path: Path, probed, network_format: str | None, device: str) -> BaseNetwork:
    """A TorchScript or .pt2 network exported to ONNX by torch's TorchScript-based exporter (the graph as loaded:
    screened, fast paths rewritten), its report layers mapped to the exported nodes by module scope, else by
    order within each kind of layer."""
    import io
    import warnings

    import torch

    from worker.engine.formats import load_network

    network = load_network(path, network_format)
    module = network.module  # as the audit ran it (a .pt2 program's module refuses train/eval switches)
    inputs = probed.batches.inputs[0]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(inputs.values()), buffer, dynamo=False, input_names=list(inputs),
                              dynamic_axes={name: {0: "batch"} for name in inputs}, opset_version=17)
    except Exception as exc:  # what torch cannot export, we cannot edit: said in every recommendation
        raise NotApplicable(f"torch.onnx.export failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    proto = onnx.load_from_string(buffer.getvalue())
    names = _exported_names([layer.name for layer in sorted(probed.result.layers, key=lambda s: s.depth)], proto)
    route = (f"the {network.format} network exported to ONNX (torch.onnx.export, TorchScript-based exporter, opset "
             "17): each patched network is that ONNX graph, edited; a TorchScript or torch.export program cannot be "
             "re-emitted with new modules in it, so the fixes download as ONNX")
    return BaseNetwork(proto, route, probed.batches, names)


_WEIGHTS = ("Gemm", "MatMul", "Conv", "RNN", "LSTM", "GRU")
_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Gelu", "HardSigmoid", "Softplus")


def _exported_names(layers: list[str], proto: onnx.ModelProto) -> dict[str, str]:
    """Report layer -> exported node: the node in the layer's module scope ('/encoder/fc1/Gemm' for
    'encoder.fc1'), a weight op first, then an activation."""
    nodes = list(proto.graph.node)
    names = {}
    for layer in layers:
        scope = "/" + layer.replace(".", "/")
        inside = [node for node in nodes if node.name.rsplit("/", 1)[0] == scope]
        chosen = next((n for n in inside if n.op_type in _WEIGHTS), None) or next(
            (n for n in inside if n.op_type in _ACTIVATIONS), None)
        if chosen is not None:
            names[layer] = chosen.name
    return names
