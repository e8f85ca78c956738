"""Statistics of every tapped layer output and of the gradient with respect to it, kept on the device.

Each tensor is reduced once, where it is produced, to a short row; rows stay on the device until
`Recorder.fetch`, which moves all of them (and the batch losses) to the host in one transfer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

# An output counts as saturated where the activation's derivative is below this share of its peak.
SATURATION_SHARE = 0.01
# 1 - tanh(z)^2 < SATURATION_SHARE  <=>  |tanh(z)| > sqrt(1 - SATURATION_SHARE); sigmoid(x) = (1 + tanh(x/2)) / 2.
_TANH_EDGE = math.sqrt(1.0 - SATURATION_SHARE)
SATURATION_RULE = (
    f"share of outputs where the derivative is below {SATURATION_SHARE:g} of its peak, judged from the output "
    f"value: |x| > {2 * math.atanh(_TANH_EDGE):.2f} for Sigmoid, |x| > {math.atanh(_TANH_EDGE):.2f} for Tanh"
)
SATURATING_KINDS = ("Sigmoid", "Tanh")

ACTIVATION_COLUMNS = ("numel", "activation_mean", "activation_std", "activation_zero_fraction",
                      "activation_saturated_fraction")
GRAD_COLUMNS = ("output_grad_norm", "output_grad_mean_abs", "output_grad_max_abs", "output_grad_zero_count",
                "output_grad_nonfinite")
# What stays on the device per tensor: raw sums and counts. The arithmetic turning them into statistics runs
# on the host after the one transfer, so each tensor costs a handful of device ops, not dozens.
_ACTIVATION_SUMS = 4  # the sample's sum, L2 norm, the sample's nonzero and saturated (or NaN) entries
_GRAD_SUMS = 6  # L2 norm, sum of |g| over the sample, min, max, nonzero entries in the sample, non-finite entries


@dataclass(frozen=True)
class Reduced:
    """One tensor's device row of raw sums, with the entry counts the host needs to turn it into statistics."""

    sums: torch.Tensor
    numel: int
    sampled: int


def activation_sums(output: torch.Tensor, kind: str | None) -> Reduced:
    """The sample's sum, the exact L2 norm, and the sample's nonzero and (Sigmoid/Tanh only, else NaN) saturated
    counts, as float64.

    The norm gives the output's RMS exactly, which is what the depth trends use; the mean only splits the RMS
    into mean and std, and a sample estimates it to within a percent of the std for one full pass less.
    """
    values = _reducible(output.detach())
    sample = sampled(values)
    norm = robust_norm(values)
    saturated = _saturated_count(sample, kind) if kind in SATURATING_KINDS else norm * math.nan
    sums = torch.stack([sample.sum(), norm, torch.count_nonzero(sample), saturated])
    return Reduced(sums, values.numel(), sample.numel())


def activation_statistics(row: list[float], numel: int, sample_size: int) -> dict[str, float]:
    """ACTIVATION_COLUMNS from activation_sums' row."""
    sample_sum, norm, nonzero, saturated = row
    mean = sample_sum / sample_size
    variance = norm * norm / numel - mean * mean
    std = math.sqrt(max(0.0, variance)) if math.isfinite(variance) else math.nan
    return dict(zip(ACTIVATION_COLUMNS, (numel, mean, std, 1 - nonzero / sample_size, saturated / sample_size)))


def sampled(values: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of every k-th run of _RUN consecutive entries, at most SAMPLE_ENTRIES of them (at least
    a k-th); all entries of a tensor no larger than that.

    A full pass costs about 0.2 ms per million floats on CPU, a sample 0.05 ms at any size, and a share
    estimated from it is within about a percent. Runs of 16 float32 fill one cache line, so the sample reads
    16x fewer lines than single entries would; k is a prime above 7, so the runs' starts walk through every
    position of power-of-two and 7x7 layouts instead of one column of them.
    """
    flat = values.reshape(-1)
    if flat.numel() <= SAMPLE_ENTRIES:
        return flat
    stride = _RUN * _prime_at_least(max(11, -(-flat.numel() // SAMPLE_ENTRIES)))
    runs = flat.numel() // stride
    return flat[:runs * stride].view(runs, stride)[:, :_RUN].contiguous().view(-1)


SAMPLE_ENTRIES = 1 << 15  # torch reduces up to 32,768 entries on one thread, without a parallel region
_RUN = 16
SAMPLING_RULE = (f"norms (so each output's RMS) and max |g| are exact; the activation mean (and so the std, "
                 f"sqrt(RMS^2 - mean^2)), the zero and saturated fractions and mean |g| of tensors over "
                 f"{SAMPLE_ENTRIES:,} entries are estimated from at most {SAMPLE_ENTRIES:,} of their entries: "
                 f"every k-th run of {_RUN} consecutive ones, k prime, k >= 11")


@functools.lru_cache(maxsize=1024)
def _prime_at_least(n: int) -> int:
    while any(n % d == 0 for d in range(2, int(n ** 0.5) + 1)):
        n += 1
    return n


def robust_norm(values: torch.Tensor) -> torch.Tensor:
    """The L2 norm as float64: float32 BLAS nrm2 (fast), redone in float64 where float32 overflowed."""
    norm = torch.linalg.vector_norm(values).double()
    # On CPU reading the result costs nothing; on an accelerator it would stall the stream, and there
    # float64 is cheap enough to do always.
    if values.device.type == "cpu" and bool(torch.isfinite(norm)):
        return norm
    return torch.linalg.vector_norm(values, dtype=torch.float64)


def grad_sums(grad: torch.Tensor) -> Reduced:
    """L2 norm, the sample's sum of |g|, min, max, the sample's nonzero count and the non-finite count."""
    values = _reducible(grad.detach())
    sample = sampled(values)
    norm = robust_norm(values)
    low, high = torch.aminmax(values)
    sums = torch.stack([norm, sample.abs().sum(), low, high, torch.count_nonzero(sample),
                        _nonfinite_count(values, norm)])
    return Reduced(sums, values.numel(), sample.numel())


def grad_statistics(row: list[float], numel: int, sample_size: int) -> dict[str, float]:
    """GRAD_COLUMNS from grad_sums' row."""
    norm, abs_sum, low, high, nonzero, nonfinite = row
    zero_count = round((1 - nonzero / sample_size) * numel)
    return dict(zip(GRAD_COLUMNS, (norm, abs_sum / sample_size, max(-low, high), zero_count, nonfinite)))


def _nonfinite_count(values: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    # Counting is the costliest reduction on CPU, and the norm is finite exactly when every entry is (short of
    # overflow past 1e154 in float64). On CPU reading the norm costs nothing, so count only when it is not;
    # on an accelerator that read would stall the stream, so count there always.
    if values.device.type == "cpu" and bool(torch.isfinite(norm)):
        return norm * 0
    return values.numel() - torch.isfinite(values).sum().double()


def _reducible(values: torch.Tensor) -> torch.Tensor:
    # Half-precision sums lose the small values an audit looks for; float32 and float64 are reduced as they are.
    return values if values.dtype in (torch.float32, torch.float64) else values.float()


def _saturated_count(values: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "Sigmoid":
        return ((values - 0.5).abs() > _TANH_EDGE / 2).sum()
    return (values.abs() > _TANH_EDGE).sum()


class Recorder:
    """Per probe batch and tapped layer: the device rows of output and output-gradient sums."""

    def __init__(self, kinds: list[str]):
        self._kinds = kinds
        self._batches: list[dict[int, list]] = []
        self._losses: list[torch.Tensor] = []

    def start_batch(self) -> None:
        """Begin recording the next probe batch."""
        self._batches.append({})

    def observe(self, index: int, output) -> None:
        """Reduce layer `index`'s output now and its gradient when backward reaches it."""
        tensor = _first_float_tensor(output)
        if tensor is None or tensor.numel() == 0:
            return
        slot = [activation_sums(tensor, self._kinds[index]), None]
        self._batches[-1][index] = slot
        if tensor.requires_grad:
            tensor.register_hook(_grad_observer(slot))

    def record_loss(self, loss: torch.Tensor) -> None:
        """Keep the batch's loss, still on the device."""
        self._losses.append(loss.detach().double().reshape(1))

    def fetch(self) -> tuple[list[list[dict | None]], list[float | None]]:
        """Per batch, per layer, the statistics as plain numbers (None where not measured); the batch losses."""
        slots = [(b, i, slot) for b, batch in enumerate(self._batches) for i, slot in sorted(batch.items())]
        rows = [_padded(slot) for _, _, slot in slots] + ([torch.cat(self._losses)] if self._losses else [])
        flat = torch.cat(rows).cpu().tolist() if rows else []
        width = _ACTIVATION_SUMS + _GRAD_SUMS
        table: list[list[dict | None]] = [[None] * len(self._kinds) for _ in self._batches]
        for n, (batch, index, slot) in enumerate(slots):
            table[batch][index] = _named(flat[n * width:(n + 1) * width], *slot)
        return table, [_finite_or_none(v) for v in flat[len(slots) * width:]]


def _grad_observer(slot: list):
    def observe(grad: torch.Tensor | None) -> None:
        if grad is not None:
            slot[1] = grad_sums(grad)

    return observe


def _padded(slot: list) -> torch.Tensor:
    activation, grad = slot
    missing = activation.sums.new_full((_GRAD_SUMS,), math.nan, dtype=torch.float64)
    return torch.cat([activation.sums.double(), grad.sums.double() if grad else missing])


def _named(values: list[float], activation: Reduced, grad: Reduced | None) -> dict:
    row = activation_statistics(values[:_ACTIVATION_SUMS], activation.numel, activation.sampled)
    if grad is None:
        row.update(dict.fromkeys(GRAD_COLUMNS), output_grad_zero_fraction=None)
    else:
        row.update(grad_statistics(values[_ACTIVATION_SUMS:], grad.numel, grad.sampled))
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
