"""The TorchScript adapter: load the archive, then build the probe batches from its inputs. There is no
reference runtime to compare with: TorchScript runs as it is."""

from __future__ import annotations

from pathlib import Path

from worker.engine.formats import MakeBatches, OpenedNetwork
from worker.engine.network import LoadedNetwork
from worker.engine.torchscript.load import load_torchscript
from worker.engine.torchscript.taps import layer_taps

__all__ = ["layer_taps", "load_network", "open_network", "use_batch_statistics"]


def open_network(path: Path, external_data_dir: Path | None, make_batches: MakeBatches) -> OpenedNetwork:
    """The loaded network and its batches."""
    network = load_torchscript(path)
    return OpenedNetwork(network, make_batches(network.inputs))


def load_network(path: Path, external_data_dir: Path | None = None) -> LoadedNetwork:
    """Load a TorchScript archive; external_data_dir has no meaning for it."""
    return load_torchscript(path)


def use_batch_statistics(network: LoadedNetwork, names: list[str]) -> None:
    """Have the named BatchNorm modules normalise with batch statistics in the tapped graph the probe runs."""
    network.batch_statistics = set(names)
