"""The facts the diagnosis reads from the network itself rather than from the probe, as plain numbers: each
weight layer's scale against its fan-in, symmetry and bias, the graph's structure, and each plain recurrence's
gradient through time, measured on its own matrices."""

from __future__ import annotations

import math

import torch

from gradaudit.schema import LayerRecord
from worker.diagnosis.facts import PLAIN, RECURRENT, WEIGHT, LayerRole, NetworkFacts, RecurrenceFacts, WeightFacts
from worker.engine.network import Layer, LoadedNetwork
from worker.engine.parameter_stats import CHUNK_ELEMENTS, named_parameters

_SEQUENCES = 32  # sequences run through a plain recurrence to measure its gradient through time
_MIN_STEPS = 4


def network_facts(network: LoadedNetwork, module: torch.nn.Module, layers: list[Layer], records: list[LayerRecord],
                  *, batch_size: int, loss_finite: bool, weight_nonfinite: dict[str, int]) -> NetworkFacts:
    """Everything the diagnosis reads: the measured records, each layer's role, and what the weights and the
    graph say (no forward pass). `layers` and `records` are the same layers, in the same order."""
    roles = {layer.name: network.layer_roles.get(layer.name) or network.roles.get(layer.kind, LayerRole())
             for layer in layers}
    numels = {r.name: r.batch_rows[0]["numel"] for r in records if r.batch_rows}
    with torch.no_grad():
        return NetworkFacts(
            layers=records, roles=roles, loss_finite=loss_finite, op_counts=network.op_counts,
            weight_nonfinite=weight_nonfinite, weights=weight_facts(module, layers, roles),
            recurrences={**recurrences(module, layers, roles, numels, batch_size),
                         **observed_recurrences(network.unrolled_steps, records)},
            structure=network.structure, batch_size=batch_size)


def weight_facts(module: torch.nn.Module, layers: list[Layer], roles: dict[str, LayerRole]) -> dict[str, WeightFacts]:
    """Per weight layer (Linear, Conv, Gemm, MatMul) and plain recurrence, by name: its weight facts."""
    parameters = named_parameters(module)
    facts = {}
    for layer in layers:
        if _has_weight_facts(roles[layer.name]) and layer.parameter_names:
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


def _has_weight_facts(role: LayerRole) -> bool:
    return role.role == WEIGHT or _is_plain_recurrence(role)


def _is_plain_recurrence(role: LayerRole) -> bool:
    return role.role == RECURRENT and role.function == PLAIN


def recurrences(module: torch.nn.Module, layers: list[Layer], roles: dict[str, LayerRole], numels: dict[str, int],
                batch_size: int) -> dict[str, RecurrenceFacts]:
    """Per plain recurrent layer by name: its gradient through time over the probe's sequence length."""
    parameters = named_parameters(module)
    found = {}
    for layer in layers:
        if _is_plain_recurrence(roles[layer.name]):
            named = {name: parameters[name].detach().double().cpu() for name in layer.parameter_names
                     if name in parameters}
            matrices = _recurrence(named)
            if matrices is not None:
                length = numels.get(layer.name, 0) // (batch_size * matrices[1].shape[0])
                found[layer.name] = RecurrenceFacts(length, _log_gradient_norms(*matrices, length))
    return found


def observed_recurrences(steps: dict[str, list[str]], records: list[LayerRecord]) -> dict[str, RecurrenceFacts]:
    """Per plain recurrence an exporter unrolled (by module path): log10 of the mean norm of dL/dh_t as the probe
    observed it at each step's hidden state, from the last step back to the first."""
    by_name = {r.name: r for r in records}
    found = {}
    for path, names in steps.items():
        logs = [_mean_log_norm(by_name[name]) for name in reversed(names) if name in by_name]
        if len(logs) == len(names) and None not in logs:
            found[path] = RecurrenceFacts(len(names), logs if len(names) >= _MIN_STEPS else [])
    return found


def _mean_log_norm(record: LayerRecord) -> float | None:
    norms = [row["output_grad_norm"] for row in record.batch_rows if row.get("output_grad_norm")]
    return sum(math.log10(n) for n in norms) / len(norms) if norms else None


def _log_gradient_norms(w: torch.Tensor, r: torch.Tensor, b: torch.Tensor, length: int) -> list[float]:
    """log10 of the mean norm of dL/dh_t from t = length - 1 back to 0, for a tanh recurrence run on standard
    normal inputs and a standard normal gradient at the last step; empty for sequences too short to fit."""
    if length < _MIN_STEPS:
        return []
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(length, _SEQUENCES, w.shape[1], generator=generator, dtype=torch.float64)
    h, derivatives = torch.zeros(_SEQUENCES, r.shape[0], dtype=torch.float64), []
    for t in range(length):
        h = torch.tanh(x[t] @ w.T + h @ r.T + b)
        derivatives.append(1 - h.square())
    g = torch.randn(_SEQUENCES, r.shape[0], generator=generator, dtype=torch.float64)
    logs = []
    for t in range(length - 1, -1, -1):
        logs.append(float(g.norm(dim=1).clamp_min(1e-300).log10().mean()))
        g = (g * derivatives[t]) @ r
    return logs


def _recurrence(named: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
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
    return by_role["ih"], by_role["hh"], bias if torch.is_tensor(bias) else torch.zeros(hidden)
