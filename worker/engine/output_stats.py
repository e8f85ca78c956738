"""Statistics of every tapped layer output and of the gradient with respect to it, kept on the device.

Each tensor is reduced once, where it is produced, to the few values that need all of its entries (its norm),
and its sample is copied into a row of SampleRows, whose sums and counts are taken a chunk of rows at a
time. Everything stays on the device until `Recorder.fetch`, which moves all of it (and the batch losses) to
the host in one transfer and does the arithmetic there. On CPU, where reading a scalar costs nothing, a few
are read at once to skip work.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from gradaudit.schema import TANH_EDGE
from worker.engine.sample_rows import SAMPLE_ENTRIES, SAMPLE_RUN, TOTALS, SampleRows

SATURATING_KINDS = ("Sigmoid", "Tanh")

ACTIVATION_COLUMNS = ("numel", "activation_mean", "activation_std", "activation_zero_fraction",
                      "activation_saturated_fraction")
GRAD_COLUMNS = ("output_grad_norm", "output_grad_mean_abs", "output_grad_max_abs", "output_grad_zero_count",
                "output_grad_nonfinite")
# What needs every entry of a tensor; the rest comes from its sample's TOTALS.
_ACTIVATION_EXACT = 2  # L2 norm, the sample's saturated (or NaN) entries
_GRAD_EXACT = 2  # L2 norm, non-finite entries

# Half-precision sums lose the small values an audit looks for; float32 and float64 are reduced as they are.
_REDUCED_AS_IS = (torch.float32, torch.float64)

Scalar = torch.Tensor | float  # a 0-d tensor on the tensor's device, or a number already known on the host


class Reduced(NamedTuple):
    """One tensor's exact values, the row of SampleRows holding its sample, and the entry counts the host needs
    to turn them into statistics."""

    exact: tuple[Scalar, ...]
    numel: int
    sampled: int
    row: int


def activation_sums(output: torch.Tensor, kind: str | None, samples: SampleRows) -> Reduced:
    """The exact L2 norm and the sample's (Sigmoid/Tanh only, else NaN) saturated count; the sample's sum and
    nonzero count come from its row.

    The norm gives the output's RMS exactly, which is what the depth trends use; the mean only splits the RMS
    into mean and std, and a sample estimates it closely enough for one full pass less (docs/engine.md).
    """
    values = flat_entries(output.detach())
    norm = robust_norm(values)
    row, size = samples.add(values)  # after the full pass, which leaves a tensor that fits the cache in it
    saturated = _saturated_count(samples.last_sample(), kind) if kind in SATURATING_KINDS else math.nan
    return Reduced((norm, saturated), values.numel(), size, row)


def activation_statistics(exact: list[float], totals: list[float], numel: int,
                          sample_size: int) -> dict[str, float]:
    """ACTIVATION_COLUMNS from activation_sums' exact values and its row's TOTALS."""
    norm, saturated = exact
    sample_sum, _, nonzero, _ = totals
    # A sample can miss the one NaN or Inf entry that the exact norm never misses.
    mean = sample_sum / sample_size if math.isfinite(norm) else math.nan
    variance = norm * norm / numel - mean * mean
    std = math.sqrt(max(0.0, variance)) if math.isfinite(variance) else math.nan
    return dict(zip(ACTIVATION_COLUMNS, (numel, mean, std, 1 - nonzero / sample_size, saturated / sample_size)))


def flat_entries(values: torch.Tensor) -> torch.Tensor:
    """The entries in one dimension, in a dtype fit to sum them: a view in memory order where the tensor is
    dense in some order of its dimensions (a transposed output), so only a truly scattered tensor is copied. Sums
    and counts ignore order."""
    if values.dtype not in _REDUCED_AS_IS:
        values = values.float()
    if values.is_contiguous():
        return values.view(-1)
    by_stride = values.permute(sorted(range(values.dim()), key=lambda d: -values.stride(d)))
    if by_stride.is_contiguous():
        values = by_stride
    return values.reshape(-1)


SAMPLING_RULE = (f"norms (so each output's RMS) and non-finite counts are exact; the activation mean (and so the "
                 f"std, sqrt(RMS^2 - mean^2)), the zero and saturated fractions, mean |g| and max |g| of tensors "
                 f"over {SAMPLE_ENTRIES:,} entries are estimated from at most {SAMPLE_ENTRIES:,} of their entries "
                 f"(max |g| is then the largest sampled one, a lower bound): every k-th run of {SAMPLE_RUN} "
                 f"consecutive ones, k prime, k >= 11")


def robust_norm(values: torch.Tensor) -> Scalar:
    """The L2 norm of a one-dimensional tensor.

    On CPU, read at once (that costs nothing there) from a float32 dot product of the entries with themselves,
    redone in float64 where float32 overflowed; on an accelerator, where a read would stall the stream and
    float64 is cheap, a float64 reduction left on the device."""
    if not values.is_cpu:
        return torch.linalg.vector_norm(values, dtype=torch.float64)
    # BLAS dot is faster than torch's own norm here (docs/engine.md).
    square = torch.dot(values, values).item()
    if math.isfinite(square):
        return math.sqrt(square)
    return torch.linalg.vector_norm(values, dtype=torch.float64).item()


def grad_sums(grad: torch.Tensor, samples: SampleRows) -> Reduced:
    """The exact L2 norm and non-finite count; the sample's sum of |g|, nonzero count and largest |g| come from
    its row.

    The largest |g| of the sample, not of the tensor: an exact one was another full pass per gradient, 71 of a
    gradient's 163 µs on ResNet-50 at batch 8 on CPU (bench/tap_reduction.py), for a figure no detector reads; a
    spike large enough to matter shows in the exact norm, and a non-finite entry in the exact count."""
    values = flat_entries(grad)  # backward without create_graph hands gradients over outside autograd
    norm = robust_norm(values)
    row, size = samples.add(values)  # after the full pass, which leaves a tensor that fits the cache in it
    return Reduced((norm, _nonfinite_count(values, norm)), values.numel(), size, row)


def grad_statistics(exact: list[float], totals: list[float], numel: int, sample_size: int) -> dict[str, float]:
    """GRAD_COLUMNS from grad_sums' exact values and its row's TOTALS."""
    norm, nonfinite = exact
    _, abs_sum, nonzero, abs_max = totals
    zero_count = round((1 - nonzero / sample_size) * numel)
    return dict(zip(GRAD_COLUMNS, (norm, abs_sum / sample_size, abs_max, zero_count, nonfinite)))


def _nonfinite_count(values: torch.Tensor, norm: Scalar) -> Scalar:
    # Counting is a full pass, and the norm is finite exactly when every entry is (short of overflow past 1e154
    # in float64). Where the norm was already read (CPU), count only when it is not finite; on an accelerator,
    # where reading it would stall the stream, count always.
    if isinstance(norm, float) and math.isfinite(norm):
        return 0
    return values.numel() - torch.isfinite(values).sum()


def _saturated_count(values: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "Sigmoid":
        return ((values - 0.5).abs() > TANH_EDGE / 2).sum()
    return (values.abs() > TANH_EDGE).sum()


class Recorder:
    """Per probe batch and tapped layer: the device values of output and output-gradient statistics."""

    def __init__(self, kinds: list[str]):
        self._kinds = kinds
        self._batches: list[dict[int, list]] = []
        self._losses: list[torch.Tensor] = []
        self._samples = SampleRows()

    def start_batch(self) -> None:
        """Begin recording the next probe batch."""
        self._batches.append({})

    def observe(self, index: int, output) -> None:
        """Reduce layer `index`'s output now and its gradient when backward reaches it."""
        tensor = _first_float_tensor(output)
        if tensor is None or tensor.numel() == 0:
            return
        slot = [activation_sums(tensor, self._kinds[index], self._samples), None]
        self._batches[-1][index] = slot
        if tensor.requires_grad:
            tensor.register_hook(_grad_observer(slot, self._samples))

    def record_loss(self, loss: torch.Tensor) -> None:
        """Keep the batch's loss, still on the device."""
        self._losses.append(loss.detach())

    def fetch(self) -> tuple[list[list[dict | None]], list[float | None]]:
        """Per batch, per layer, the statistics as plain numbers (None where not measured); the batch losses."""
        slots = [(b, i, slot) for b, batch in enumerate(self._batches) for i, slot in sorted(batch.items())]
        scalars = [value for _, _, slot in slots for value in _padded(slot)] + self._losses
        flat, totals = _on_host(scalars, self._samples.totals())
        width = _ACTIVATION_EXACT + _GRAD_EXACT
        table: list[list[dict | None]] = [[None] * len(self._kinds) for _ in self._batches]
        for n, (batch, index, slot) in enumerate(slots):
            table[batch][index] = _named(flat[n * width:(n + 1) * width], totals, *slot)
        return table, [_finite_or_none(v) for v in flat[len(slots) * width:]]


def _grad_observer(slot: list, samples: SampleRows):
    def observe(grad: torch.Tensor | None) -> None:
        if grad is not None:
            slot[1] = grad_sums(grad, samples)

    return observe


def _padded(slot: list) -> tuple[Scalar, ...]:
    activation, grad = slot
    return activation.exact + (grad.exact if grad else (math.nan,) * _GRAD_EXACT)


def _on_host(scalars: list[Scalar], totals: list[torch.Tensor]) -> tuple[list[float], list[list[float]]]:
    """Every scalar as a float, and each sample row's TOTALS: on an accelerator all of it travels in one
    transfer; on CPU each scalar is read."""
    tensors = [value for value in scalars if isinstance(value, torch.Tensor)]
    rows = torch.cat(totals) if totals else torch.zeros(0, len(TOTALS), dtype=torch.float64)
    if (tensors[0] if tensors else rows).device.type == "cpu":
        values, host_rows = [t.item() for t in tensors], rows.tolist()
    else:
        values, host_rows = moved_at_once(tensors, rows)
    read = iter(values)
    return [float(next(read)) if isinstance(value, torch.Tensor) else float(value) for value in scalars], host_rows


def moved_at_once(tensors: list[torch.Tensor], rows: torch.Tensor) -> tuple[list[float], list[list[float]]]:
    """0-d tensors of any dtype and the (n, len(TOTALS)) rows, all on one device, as host numbers: one transfer."""
    device = tensors[0].device if tensors else rows.device
    stacked = [torch.stack(tensors).double()] if tensors else []  # stack promotes the mixed dtypes
    moved = torch.cat(stacked + [rows.to(device, torch.float64).flatten()]).cpu().tolist()
    width = len(TOTALS)
    return moved[:len(tensors)], [moved[n:n + width] for n in range(len(tensors), len(moved), width)]


def _named(values: list[float], totals: list[list[float]], activation: Reduced, grad: Reduced | None) -> dict:
    row = activation_statistics(values[:_ACTIVATION_EXACT], totals[activation.row], activation.numel,
                                activation.sampled)
    if grad is None:
        row.update(dict.fromkeys(GRAD_COLUMNS), output_grad_zero_fraction=None)
    else:
        row.update(grad_statistics(values[_ACTIVATION_EXACT:], totals[grad.row], grad.numel, grad.sampled))
        row["output_grad_nonfinite"] = int(row["output_grad_nonfinite"])
        row["output_grad_zero_fraction"] = row["output_grad_zero_count"] / row["numel"]
    return {key: _finite_or_none(value) for key, value in row.items()}


def _finite_or_none(value):
    # The report is JSON: NaN and Inf have no spelling there, and None says "not measured / not finite".
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _first_float_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    if isinstance(output, (tuple, list)):
        return next((t for t in map(_first_float_tensor, output) if t is not None), None)
    return None
