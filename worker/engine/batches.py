"""The probe's batches: several synthetic ones drawn from consecutive seeds, or the user's one .npz batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gradaudit.options import AuditOptions
from worker.engine.inputs import build_inputs
from worker.engine.network import InputSpec


@dataclass(frozen=True)
class ProbeBatches:
    """CPU input tensors by name for each batch, the seed of each, and what setup should say about them."""

    inputs: list[dict[str, torch.Tensor]]
    seeds: list[int]
    setup: dict


def probe_batches(specs: list[InputSpec], options: AuditOptions, inputs_path: Path | None) -> ProbeBatches:
    """options.batches synthetic batches with seeds seed, seed+1, ...; exactly one batch for an uploaded .npz."""
    if inputs_path is not None:
        seeds = [options.seed]
        inputs = [build_inputs(specs, options, inputs_path)]
        source = {"inputs": "the uploaded .npz batch, used as the only batch"}
    else:
        seeds = [options.seed + offset for offset in range(options.batches)]
        inputs = [build_inputs(specs, options.model_copy(update={"seed": seed})) for seed in seeds]
        source = {"inputs": {spec.name: _synthetic_rule(spec, inputs[0][spec.name]) for spec in specs}}
    return ProbeBatches(inputs, seeds, {"batches": len(seeds), "seeds": seeds, **source})


def _synthetic_rule(spec: InputSpec, example: torch.Tensor) -> str:
    if example.is_floating_point():
        return "standard normal"
    if example.dtype == torch.bool:
        return "uniform over {false, true}"
    if spec.vocab:
        return f"integers uniform over [0, {spec.vocab}), the rows of the embedding table it indexes"
    return "integers uniform over {0, 1} (no embedding table found to bound them)"
