"""What the detectors need to know about each layer's weights: scale against its fan-in, symmetry, biases,
and for a plain recurrence its recurrent and input matrices."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from worker.engine.load import Layer
from worker.engine.stats import CHUNK_ELEMENTS

RECURRENT_KINDS = ("RNN",)  # plain (tanh/sigmoid) recurrences; LSTM and GRU are the fix, not the problem
_WEIGHT_KINDS = ("Linear", "Gemm", "MatMul", "Conv", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose",
                 "Conv2D", "NonDynamicallyQuantizableLinear", "RNN", "Bilinear")


@dataclass(frozen=True)
class WeightFacts:
    """One weight layer's main matrix: its fan-in, RMS, whether every entry is equal, its bias mean."""

    fan_in: int
    rms: float
    constant: bool
    bias_mean: float | None


@dataclass(frozen=True)
class RecurrenceFacts:
    """A plain recurrence's matrices (input, recurrent, bias), as float64 CPU tensors."""

    input_matrix: torch.Tensor
    recurrent_matrix: torch.Tensor
    bias: torch.Tensor


def weight_facts(module: torch.nn.Module, layers: list[Layer]) -> dict[str, WeightFacts]:
    """Per weight layer (Linear, Conv, Gemm, MatMul, RNN) by name: its weight facts."""
    parameters = dict(module.named_parameters())
    facts = {}
    for layer in layers:
        if layer.kind in _WEIGHT_KINDS and layer.parameter_names:
            tensors = [parameters[name].detach() for name in layer.parameter_names if name in parameters]
            found = _facts(tensors)
            if found is not None:
                facts[layer.name] = found
    return facts


def _facts(tensors: list[torch.Tensor]) -> WeightFacts | None:
    matrices = [t for t in tensors if t.dim() >= 2 and t.numel() > 0]
    if not matrices:
        return None
    weight = matrices[0].squeeze(0) if matrices[0].dim() == 3 else matrices[0]
    biases = [t for t in tensors if t.dim() == 1]
    mean, mean_square = _moments(weight)
    spread = math.sqrt(max(0.0, mean_square - mean * mean)) if weight.numel() > 1 else 0.0
    rms = math.sqrt(mean_square)
    return WeightFacts(
        fan_in=weight[0].numel(),
        rms=rms,
        constant=weight.numel() > 1 and spread <= 1e-7 * max(rms, 1e-30),
        bias_mean=float(biases[0].double().mean()) if biases else None,
    )


def _moments(weight: torch.Tensor) -> tuple[float, float]:
    """Mean and mean square of the entries, in float64 a chunk at a time: a float64 copy of a 100M-parameter
    layer, and its square, would cost more memory than the network."""
    flat, total, square = weight.reshape(-1), 0.0, 0.0
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        chunk = flat[start:start + CHUNK_ELEMENTS].double()
        total += float(chunk.sum())
        square += float(chunk.square().sum())
    return total / flat.numel(), square / flat.numel()


def recurrences(module: torch.nn.Module, layers: list[Layer]) -> dict[str, RecurrenceFacts]:
    """Per plain recurrent layer by name: its first-direction matrices."""
    parameters = dict(module.named_parameters())
    found = {}
    for layer in layers:
        if layer.kind in RECURRENT_KINDS:
            named = {name: parameters[name].detach().double().cpu() for name in layer.parameter_names
                     if name in parameters}
            facts = _recurrence(named)
            if facts is not None:
                found[layer.name] = facts
    return found


def _recurrence(named: dict[str, torch.Tensor]) -> RecurrenceFacts | None:
    """TorchScript nn.RNN names its matrices weight_ih_l0/weight_hh_l0; ONNX RNN reads W, R, B in that order."""
    by_role = {"ih": None, "hh": None}
    for name, tensor in named.items():
        role = "hh" if "hh" in name.rsplit(".", 1)[-1] else "ih" if "ih" in name.rsplit(".", 1)[-1] else None
        if role and tensor.dim() == 2 and by_role[role] is None:
            by_role[role] = tensor
    if by_role["hh"] is None:
        matrices = [t[0] for t in named.values() if t.dim() == 3]
        if len(matrices) < 2:
            return None
        by_role = {"ih": matrices[0], "hh": matrices[1]}
    hidden = by_role["hh"].shape[0]
    bias = sum((t[0] if t.dim() == 2 else t).reshape(-1, hidden).sum(0) for t in named.values()
               if t.dim() <= 2 and t.numel() % hidden == 0 and t is not by_role["hh"] and t is not by_role["ih"])
    return RecurrenceFacts(by_role["ih"], by_role["hh"], bias if torch.is_tensor(bias) else torch.zeros(hidden))
