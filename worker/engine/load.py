"""Load an uploaded artifact into a torch network plus what the audit needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from gradaudit.formats import UnsupportedFormat, sniff_format
from worker.engine.errors import AuditError


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


def detect_format(path: Path) -> str:
    """The artifact's format by content, or AuditError("unsupported_format")."""
    with open(path, "rb") as stream:
        try:
            return sniff_format(stream)
        except UnsupportedFormat as exc:
            raise AuditError("unsupported_format", exc.detail) from None


def load_network(path: Path, network_format: str | None = None, external_data_dir: Path | None = None) -> LoadedNetwork:
    """Load an ONNX or TorchScript artifact; the format is sniffed when not given."""
    network_format = network_format or detect_format(path)
    if network_format == "onnx":
        from worker.engine.onnx_load import load_onnx

        return load_onnx(path, external_data_dir)
    if network_format == "torchscript":
        from worker.engine.torchscript_load import load_torchscript

        return load_torchscript(path)
    raise AuditError("unsupported_format", f"unknown network format {network_format!r}")
