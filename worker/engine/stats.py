"""Per-layer statistics of parameter gradients, computed on the device and fetched in one transfer."""

from __future__ import annotations

import torch

from worker.engine.load import Layer
from worker.engine.result import LayerStats

# Column order of the per-layer row computed on the device.
_COLUMNS = (
    "parameters", "weight_norm", "grad_norm", "grad_mean_abs", "grad_std",
    "grad_max_abs", "grad_zero_fraction", "grad_nonfinite", "weight_nonfinite",
)


def layer_stats(module: torch.nn.Module, layers: list[Layer],
                probes: list[list[dict]] | None = None) -> tuple[list[LayerStats], dict[str, int]]:
    """LayerStats per layer (zeros for parameter-free ones), and non-finite weight counts where there are any."""
    measured = _measured(module, [layer for layer in layers if layer.parameter_names])
    stats, weight_nonfinite = [], {}
    for index, layer in enumerate(layers):
        values = dict(zip(_COLUMNS, measured.get(layer.name, [0.0] * len(_COLUMNS))))
        nonfinite = int(values.pop("weight_nonfinite"))
        if nonfinite:
            weight_nonfinite[layer.name] = nonfinite
        stats.append(_as_layer_stats(layer, values, probes[index] if probes else []))
    return stats, weight_nonfinite


def _measured(module: torch.nn.Module, owning: list[Layer]) -> dict[str, list[float]]:
    """The device rows of every parameter-owning layer, fetched in one transfer."""
    if not owning:
        return {}
    parameters = dict(module.named_parameters())
    rows = torch.stack([_row([parameters[name] for name in layer.parameter_names]) for layer in owning])
    return dict(zip((layer.name for layer in owning), rows.cpu().tolist()))


def _as_layer_stats(layer: Layer, values: dict[str, float], probes: list[dict]) -> LayerStats:
    weight_norm, grad_norm = values["weight_norm"], values["grad_norm"]
    return LayerStats(
        name=layer.name,
        kind=layer.kind,
        depth=layer.depth,
        parameters=int(values.pop("parameters")),
        grad_nonfinite=int(values.pop("grad_nonfinite")),
        grad_to_weight=grad_norm / weight_norm if weight_norm > 0 else 0.0,
        probes=probes,
        **values,
    )


def _row(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    weights = torch.cat([p.detach().reshape(-1).double() for p in parameters])
    grads = torch.cat([_grad(p).reshape(-1).double() for p in parameters])
    finite_weights, _ = _finite(weights)
    finite, nonfinite = _finite(grads)
    count = torch.tensor(float(grads.numel()), dtype=torch.float64, device=grads.device)
    magnitude = finite.abs()
    return torch.stack([
        count,
        torch.linalg.vector_norm(finite_weights),
        torch.linalg.vector_norm(finite),
        magnitude.mean() if finite.numel() else count * 0,
        finite.std(correction=0) if finite.numel() else count * 0,
        magnitude.max() if finite.numel() else count * 0,
        (grads == 0).double().mean(),
        nonfinite,
        weights.numel() - torch.isfinite(weights).sum().double(),
    ])


def _grad(parameter: torch.nn.Parameter) -> torch.Tensor:
    # A parameter the loss never reached has no gradient; for the audit that is a zero gradient.
    return parameter.grad.detach() if parameter.grad is not None else torch.zeros_like(parameter.detach())


def _finite(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The finite entries, and how many entries were NaN or infinite (as a 0-d tensor)."""
    mask = torch.isfinite(values)
    return values[mask], (~mask).sum().double()
