"""Which layers the report lists, and how the probe sees each one's output. Each format adapter builds its
Taps (hooks for ONNX, a graph rewrite for TorchScript); layers include parameter-free ones (ReLU, Sigmoid,
Add, Concat, ...), while layout-only ops, which move or relabel values without computing new ones, are not
layers and are not tapped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from worker.engine.network import Layer
from worker.engine.output_stats import Recorder


@dataclass
class Taps:
    """Every layer of the report, input side first, and how to run the network so each output is observed."""

    layers: list[Layer]
    description: str  # for setup["layer_outputs"]: what was tapped, or "unavailable: <why>"
    tapped: int = 0
    attach: Callable[[torch.nn.Module, Recorder], Callable] | None = None  # returns the forward to call
    detach: list = field(default_factory=list)
    fallback: Taps | None = None  # what to probe with instead if running these taps fails (TorchScript)

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


def hooked(module: torch.nn.Module, targets: list, recorder: Recorder, handles: list) -> torch.nn.Module:
    """Forward hooks on each target submodule that report its output to the recorder as layer `index`."""
    for index, target in enumerate(targets):
        if target is not None:
            handles.append(target.register_forward_hook(_observer(recorder, index)))
    return module


def _observer(recorder: Recorder, index: int) -> Callable:
    def observe(_module, _inputs, output) -> None:
        recorder.observe(index, output)

    return observe


CALL_MARK = "#"


def call_name(name: str, call: int) -> str:
    """The row of a module's k-th call, in every format: its name for the first call, name#k for later ones
    (ALBERT's shared layer called 12 times is encoder.shared, encoder.shared#2, ..., encoder.shared#12)."""
    return name if call == 1 else f"{name}{CALL_MARK}{call}"


def base_path(name: str) -> tuple[str, int]:
    """(module name, call number) of a row name written by call_name."""
    path, _, call = name.partition(CALL_MARK)
    return path, int(call) if call else 1


def observed_layers(layers: list[Layer], probes: list[list[dict]]) -> tuple[list[Layer], list[list[dict]]]:
    """Drop parameter-free layers whose output was never a float tensor (shape arithmetic); renumber depth."""
    kept = [(layer, rows) for layer, rows in zip(layers, probes) if layer.parameter_names or rows]
    renumbered = [Layer(layer.name, layer.kind, depth, layer.parameter_names) for depth, (layer, _) in enumerate(kept)]
    return renumbered, [rows for _, rows in kept]
