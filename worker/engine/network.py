"""The types every format adapter produces: a loaded network with its inputs, layers, the role of each
operator, and the structure of its graph."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from worker.diagnosis.facts import GATED, PLAIN, RECURRENT, LayerRole, Structure
from worker.engine.normalization import BatchNormLayer

# ONNX and torch.nn name their recurrences alike.
RECURRENCES = {"RNN": LayerRole(RECURRENT, PLAIN), "LSTM": LayerRole(RECURRENT, GATED), "GRU": LayerRole(RECURRENT, GATED)}


@dataclass(frozen=True)
class InputSpec:
    """One network input: dims with None where dynamic (dims None when undeclared), dtype, id range."""

    name: str
    dims: list[int | None] | None
    dtype: torch.dtype | None  # None: the format does not say (TorchScript float inputs)
    vocab: int | None = None  # for integer inputs: size of the table they index, when known


@dataclass(frozen=True)
class Layer:
    """A group of parameters that the report treats as one layer."""

    name: str
    kind: str
    depth: int
    parameter_names: list[str]


@dataclass(frozen=True)
class NodeInfo:
    """One converted ONNX node: name, op type, topological position, the root attribute that runs it."""

    name: str
    op_type: str
    depth: int
    module_path: str  # a direct child of the root: dict(module.named_modules())[module_path]; may contain dots
    layout_only: bool = False  # Reshape, Transpose, Identity, ...: moves data, computes nothing
    reads_data: bool = True  # False for shape arithmetic: its output follows from shapes and constants alone


@dataclass
class LoadedNetwork:
    """A torch module ready to probe, with its inputs, layers and counts of telling ops."""

    module: torch.nn.Module
    format: str
    inputs: list[InputSpec]
    layers: list[Layer]
    op_counts: dict[str, int] = field(default_factory=dict)  # normalised op names: {"sigmoid": 11, "batch_norm": 2}
    output_names: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # format-specific facts for the report's setup
    nodes: list[NodeInfo] = field(default_factory=list)  # ONNX only: every node, in topological order
    roles: dict[str, LayerRole] = field(default_factory=dict)  # by layer kind, in the format's own op names
    layer_roles: dict[str, LayerRole] = field(default_factory=dict)  # by layer name, where it overrides its kind's
    structure: Structure | None = None  # None where the graph could not be walked
    batch_norms: list[BatchNormLayer] = field(default_factory=list)
    # TorchScript: the BatchNorm modules the taps' graph runs on batch statistics (ONNX switches its modules)
    batch_statistics: set[str] = field(default_factory=set)
    # ONNX: parameter name -> the name of the first one holding the same parameter of the user's network, where
    # the file stores one parameter several times (once per call of a shared layer, transposed, tied)
    same_parameters: dict[str, str] = field(default_factory=dict)
    # ONNX from the dynamo exporter: per plain recurrence it unrolled (by module path), its hidden state's layer
    # at each time step, in time order (worker/engine/onnx/unrolled.py)
    unrolled_steps: dict[str, list[str]] = field(default_factory=dict)

