"""The torch.export adapter (.pt2 ExportedProgram archives): read and screen the archive without unpickling,
deserialize and unlift the program, then build the probe batches from its signature's input shapes. There is no
reference runtime to compare with: the program runs as it is."""

from __future__ import annotations

from pathlib import Path

from worker.engine.formats import MakeBatches, OpenedNetwork
from worker.engine.network import LoadedNetwork
from worker.engine.pt2 import normalization
from worker.engine.pt2.calls import MODULES_META
from worker.engine.pt2.load import load_exported_program
from worker.engine.pt2.taps import layer_taps

__all__ = ["layer_taps", "load_network", "open_network", "use_batch_statistics"]


def open_network(path: Path, external_data_dir: Path | None, make_batches: MakeBatches) -> OpenedNetwork:
    """The loaded network and its batches."""
    network = load_exported_program(path)
    return OpenedNetwork(network, make_batches(network.inputs))


def load_network(path: Path, external_data_dir: Path | None = None) -> LoadedNetwork:
    """Load a .pt2 archive; external_data_dir has no meaning for it."""
    return load_exported_program(path)


def use_batch_statistics(network: LoadedNetwork, names: list[str]) -> None:
    """Have the named BatchNorm layers normalise with batch statistics: their calls in the graph are rewritten."""
    root_name = next((kind for path, kind in network.module.meta[MODULES_META] if path == ""), "")
    normalization.use_batch_statistics(network.module, set(names), root_name)
    network.batch_statistics = set(names)
