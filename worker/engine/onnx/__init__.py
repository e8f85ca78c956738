"""The ONNX adapter: read and check the graph, build the probe batches from its declared inputs, run
onnxruntime on the first batch, then convert to torch.

onnxruntime holds its own copy of the weights while it runs, so it runs before conversion reads ours: the two
copies never coexist.
"""

from __future__ import annotations

import functools
from pathlib import Path

import onnx

from worker.engine import progress
from worker.engine.formats import MakeBatches, OpenedNetwork
from worker.engine.network import LoadedNetwork
from worker.engine.onnx.parity import onnxruntime_outputs, parity_check
from worker.engine.onnx.read import convert_graph, graph_in_memory, read_onnx, use_batch_statistics
from worker.engine.onnx.taps import layer_taps

__all__ = ["layer_taps", "load_network", "load_proto", "open_network", "use_batch_statistics"]


def open_network(path: Path, external_data_dir: Path | None, make_batches: MakeBatches) -> OpenedNetwork:
    """The converted network, its batches, and the parity check against onnxruntime's outputs."""
    graph = read_onnx(path, external_data_dir)
    batches = make_batches(graph.inputs)
    progress.report("checking_parity")
    reference = onnxruntime_outputs(path, batches.inputs[0])
    progress.report("converting")
    return OpenedNetwork(convert_graph(graph), batches, functools.partial(parity_check, reference))


def load_network(path: Path, external_data_dir: Path | None = None) -> LoadedNetwork:
    """Read, check and convert an ONNX artifact (its external weights, if any, from external_data_dir)."""
    return convert_graph(read_onnx(path, external_data_dir))


def load_proto(proto: onnx.ModelProto) -> LoadedNetwork:
    """Check and convert a network held in memory with its weights; conversion takes the proto (rewrites it)."""
    return convert_graph(graph_in_memory(proto))
