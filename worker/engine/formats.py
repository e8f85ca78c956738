"""The one place the engine switches on an artifact's format: every format adapter (worker/engine/onnx/,
worker/engine/torchscript/, worker/engine/pt2/) has the same small surface, and the audit reaches it only through here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from gradaudit.errors import AuditError
from gradaudit.formats import UnsupportedFormat, sniff_format
from worker.engine.batches import ProbeBatches
from worker.engine.network import InputSpec, LoadedNetwork
from worker.engine.taps import Taps

# Imported on first use: an audit of one format never loads the other's libraries.
_ADAPTERS = {"onnx": "worker.engine.onnx", "torchscript": "worker.engine.torchscript", "pt2": "worker.engine.pt2"}

MakeBatches = Callable[[list[InputSpec]], ProbeBatches]


@dataclass
class OpenedNetwork:
    """A loaded network, its probe batches, and where the format has a reference runtime (ONNX: onnxruntime)
    the parity check: parity(first_output, uploaded) -> setup entries."""

    network: LoadedNetwork
    batches: ProbeBatches
    parity: Callable[..., dict] | None = None


def detect_format(path: Path) -> str:
    """The artifact's format by content, or AuditError("unsupported_format")."""
    with open(path, "rb") as stream:
        try:
            return sniff_format(stream)
        except UnsupportedFormat as exc:
            raise AuditError("unsupported_format", exc.detail) from None


def open_network(path: Path, network_format: str | None, external_data_dir: Path | None,
                 make_batches: MakeBatches) -> OpenedNetwork:
    """Load the artifact and build its probe batches, in the order its format needs."""
    return adapter(network_format or detect_format(path)).open_network(Path(path), external_data_dir, make_batches)


def load_network(path: Path, network_format: str | None = None, external_data_dir: Path | None = None) -> LoadedNetwork:
    """Load an ONNX, TorchScript or .pt2 artifact; the format is sniffed when not given."""
    return adapter(network_format or detect_format(path)).load_network(Path(path), external_data_dir)


def taps_for(network: LoadedNetwork) -> Taps:
    """The layers the report lists and how the probe observes each one's output."""
    return adapter(network.format).layer_taps(network)


def use_batch_statistics(network: LoadedNetwork, names: list[str]) -> None:
    """Have the named BatchNorm layers normalise with batch statistics from now on (worker/engine/normalization.py)."""
    if names:
        adapter(network.format).use_batch_statistics(network, names)


def adapter(network_format: str) -> ModuleType:
    """The adapter module of a format: open_network, load_network, layer_taps, use_batch_statistics."""
    if network_format not in _ADAPTERS:
        raise AuditError("unsupported_format", f"unknown network format {network_format!r}")
    return importlib.import_module(_ADAPTERS[network_format])
