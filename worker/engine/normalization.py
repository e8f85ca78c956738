"""Which BatchNorm layers the probe runs on batch statistics.

An untrained network's BatchNorm still holds its initial running statistics (mean 0, variance 1); in eval mode
it is then an identity, and a probe in eval mode measures a network nobody trains: every training step
normalises with the batch's own statistics. So a BatchNorm layer whose running statistics are exactly their
initial values is probed with batch statistics, as training computes, and a calibrated one (a trained network,
or one whose statistics were estimated on data) keeps its running statistics, as the user's own evaluation
does. The option `normalization` overrides the rule: "batch" or "running" for every layer. Running statistics
are never changed by the probe (momentum 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RULE = ("BatchNorm layers whose running statistics are at their initial values (mean 0, variance 1: an untrained "
        "network) normalise with each batch's own statistics, as in training; calibrated ones use their running "
        "statistics; running statistics are never updated")


@dataclass(frozen=True)
class BatchNormLayer:
    """A BatchNorm layer of the loaded network: its name in the report, whether its running statistics are at
    their initial values, and whether the export itself normalises with batch statistics."""

    name: str
    initial: bool
    exported_in_training_mode: bool = False


def batch_statistics(layers: list[BatchNormLayer], mode: str, batch_size: int) -> list[str]:
    """The layers to probe with batch statistics under the option `mode` (auto, batch, running). Under auto, a
    batch of one sample keeps running statistics: one sample's statistics are not what training normalises
    with (and a BatchNorm1d cannot compute them)."""
    if mode == "batch":
        return [layer.name for layer in layers]
    fresh = mode == "auto" and batch_size > 1
    return [layer.name for layer in layers if layer.exported_in_training_mode or (fresh and layer.initial)]


def setup_entries(layers: list[BatchNormLayer], chosen: list[str], mode: str) -> dict:
    """setup's normalization_mode (none, batch, running or mixed) and, where there is BatchNorm, the rule and
    which layers used which statistics."""
    if not layers:
        return {"normalization_mode": "none"}
    running = [layer.name for layer in layers if layer.name not in chosen]
    overall = "mixed" if chosen and running else "batch" if chosen else "running"
    return {"normalization_mode": overall, "normalization_option": mode, "normalization_rule": RULE,
            "normalization_layers": {"batch_statistics": chosen, "running_statistics": running}}


def has_initial_statistics(mean: torch.Tensor | None, var: torch.Tensor | None) -> bool:
    """Whether running statistics are exactly as a fresh BatchNorm holds them (or absent)."""
    if mean is None or var is None:
        return True  # track_running_stats=False: it always normalises with batch statistics
    return bool(torch.all(mean == 0)) and bool(torch.all(var == 1))


def normalise_with_batch_statistics(norm: torch.nn.modules.batchnorm._BatchNorm) -> None:
    """Make a torch BatchNorm module normalise with batch statistics without updating its running ones."""
    norm.train()
    norm.momentum = 0.0
