"""Per-layer statistics of parameter gradients, computed on the device and fetched in one transfer.

A parameter may belong to several layers: each call of a module called several times, or a module whose weight
is tied to another's. Each such layer reports it (its gradient accumulates over every use), and the network's
total counts it once.
"""

from __future__ import annotations

import torch

from gradaudit.schema import LayerRecord
from worker.engine.network import Layer

# Column order of the per-layer row computed on the device.
_COLUMNS = (
    "parameters", "weight_norm", "grad_norm", "grad_mean_abs", "grad_std",
    "grad_max_abs", "grad_zero_fraction", "grad_nonfinite", "weight_nonfinite",
)


def layer_records(module: torch.nn.Module, layers: list[Layer],
                batch_rows: list[list[dict]] | None = None) -> tuple[list[LayerRecord], dict[str, int]]:
    """A LayerRecord per layer (zeros for parameter-free ones), and non-finite weight counts where there are any."""
    measured = _measured(module, [layer for layer in layers if layer.parameter_names])
    stats, weight_nonfinite = [], {}
    for index, layer in enumerate(layers):
        values = dict(zip(_COLUMNS, measured.get(layer.name, [0.0] * len(_COLUMNS))))
        nonfinite = int(values.pop("weight_nonfinite"))
        if nonfinite:
            weight_nonfinite[layer.name] = nonfinite
        stats.append(_as_record(layer, values, batch_rows[index] if batch_rows else []))
    return stats, weight_nonfinite


def _measured(module: torch.nn.Module, owning: list[Layer]) -> dict[str, list[float]]:
    """The device rows of every parameter-owning layer, fetched in one transfer."""
    if not owning:
        return {}
    parameters = named_parameters(module)
    groups = list(dict.fromkeys(tuple(layer.parameter_names) for layer in owning))  # each call's are the first's
    rows = dict(zip(groups, torch.stack([_row([parameters[name] for name in group]) for group in groups])
                    .cpu().tolist()))
    return {layer.name: rows[tuple(layer.parameter_names)] for layer in owning}


def named_parameters(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Every parameter under every name it has: a tied weight (decoder.weight is embedding.weight) keeps both."""
    return dict(module.named_parameters(remove_duplicate=False))


def parameter_total(module: torch.nn.Module, layers: list[Layer], same: dict[str, str] | None = None) -> int:
    """The network's parameters, each counted once however many layers list it. `same` maps a parameter's name
    to the one holding the same parameter of the user's network, where the format stored it more than once."""
    parameters, counted = named_parameters(module), {}
    for name in {name for layer in layers for name in layer.parameter_names}:
        tensor = parameters[(same or {}).get(name, name)]
        counted[id(tensor)] = tensor.numel()
    return sum(counted.values())


def _as_record(layer: Layer, values: dict[str, float], batch_rows: list[dict]) -> LayerRecord:
    weight_norm, grad_norm = values["weight_norm"], values["grad_norm"]
    return LayerRecord(
        name=layer.name,
        kind=layer.kind,
        depth=layer.depth,
        parameters=int(values.pop("parameters")),
        grad_nonfinite=int(values.pop("grad_nonfinite")),
        grad_to_weight=grad_norm / weight_norm if weight_norm > 0 else 0.0,
        batch_rows=batch_rows,
        **values,
    )


# Elements reduced at a time: float64 working copies of a 100M-parameter layer would cost more
# memory than the network itself, chunks cost a few megabytes.
CHUNK_ELEMENTS = 1 << 20
# Running sums per layer, in float64 on the device.
_SUMS = ("count", "weight_sumsq", "weight_nonfinite", "finite", "sum", "sumsq", "sum_abs", "max_abs", "zeros",
         "nonfinite")


def _row(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    sums = None
    for weights, grads in _chunks(parameters):
        chunk_sums = _chunk_sums(weights, grads)
        sums = chunk_sums if sums is None else _combine(sums, chunk_sums)
    return _as_row(dict(zip(_SUMS, sums)))


def _chunks(parameters: list[torch.nn.Parameter]):
    """(weights, gradients) chunk pairs as float64, one chunk alive at a time."""
    for parameter in parameters:
        weights, grads = parameter.detach().reshape(-1), _grad(parameter).reshape(-1)
        for start in range(0, max(weights.numel(), 1), CHUNK_ELEMENTS):
            end = start + CHUNK_ELEMENTS
            yield weights[start:end].double(), grads[start:end].double()


def _chunk_sums(weights: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    finite_weights = torch.isfinite(weights)
    finite = torch.isfinite(grads)
    clean = torch.where(finite, grads, 0.0)
    magnitude = clean.abs()
    return torch.stack([
        torch.tensor(float(grads.numel()), dtype=torch.float64, device=grads.device),
        torch.where(finite_weights, weights, 0.0).square().sum(),
        (~finite_weights).sum().double(),
        finite.sum().double(),
        clean.sum(),
        clean.square().sum(),
        magnitude.sum(),
        magnitude.max() if magnitude.numel() else magnitude.new_zeros(()),
        (grads == 0).sum().double(),
        (~finite).sum().double(),
    ])


def _combine(total: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
    combined = total + chunk
    combined[_SUMS.index("max_abs")] = torch.maximum(total[_SUMS.index("max_abs")], chunk[_SUMS.index("max_abs")])
    return combined


def _as_row(sums: dict[str, torch.Tensor]) -> torch.Tensor:
    finite = sums["finite"].clamp(min=1)
    mean = sums["sum"] / finite
    variance = (sums["sumsq"] / finite - mean.square()).clamp(min=0)
    return torch.stack([
        sums["count"],
        sums["weight_sumsq"].sqrt(),
        sums["sumsq"].sqrt(),
        sums["sum_abs"] / finite,
        variance.sqrt(),
        sums["max_abs"],
        sums["zeros"] / sums["count"].clamp(min=1),
        sums["nonfinite"],
        sums["weight_nonfinite"],
    ])


def _grad(parameter: torch.nn.Parameter) -> torch.Tensor:
    # A parameter the loss never reached has no gradient; for the audit that is a zero gradient.
    return parameter.grad.detach() if parameter.grad is not None else torch.zeros_like(parameter.detach())
