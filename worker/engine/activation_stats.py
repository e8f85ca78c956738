"""Statistics of every tapped layer output and of the gradient with respect to it, kept on the device.

Each tensor is reduced once, where it is produced, to a few raw sums; they stay on the device until
`Recorder.fetch`, which moves all of them (and the batch losses) to the host in one transfer and does the
arithmetic there. On CPU, where reading a scalar costs nothing, a few are read at once to skip work.
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

Scalar = torch.Tensor | float  # a 0-d tensor on the tensor's device, or a number already known on the host


@dataclass(frozen=True)
class Reduced:
    """One tensor's raw sums, with the entry counts the host needs to turn them into statistics."""

    sums: tuple[Scalar, ...]
    numel: int
    sampled: int


def activation_sums(output: torch.Tensor, kind: str | None) -> Reduced:
    """The sample's sum, the exact L2 norm, and the sample's nonzero and (Sigmoid/Tanh only, else NaN) saturated
    counts.

    The norm gives the output's RMS exactly, which is what the depth trends use; the mean only splits the RMS
    into mean and std, and a sample estimates it to within a percent of the std for one full pass less.
    """
    values = _flat(_reducible(output.detach()))
    norm = robust_norm(values)
    sample = sampled(values)  # after the full pass, which leaves a tensor that fits the cache in it
    saturated = _saturated_count(sample, kind) if kind in SATURATING_KINDS else math.nan
    return Reduced((sample.sum(), norm, _nonzero(sample), saturated), values.numel(), sample.numel())


def activation_statistics(row: list[float], numel: int, sample_size: int) -> dict[str, float]:
    """ACTIVATION_COLUMNS from activation_sums' row."""
    sample_sum, norm, nonzero, saturated = row
    # A sample can miss the one NaN or Inf entry that the exact norm never misses.
    mean = sample_sum / sample_size if math.isfinite(norm) else math.nan
    variance = norm * norm / numel - mean * mean
    std = math.sqrt(max(0.0, variance)) if math.isfinite(variance) else math.nan
    return dict(zip(ACTIVATION_COLUMNS, (numel, mean, std, 1 - nonzero / sample_size, saturated / sample_size)))


def sampled(values: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of every k-th run of _RUN consecutive entries, at most SAMPLE_ENTRIES of them (at least
    a k-th); all entries of a tensor no larger than that.

    A full pass costs 0.05-0.1 ms per million floats on CPU, a sample about 0.02 ms at any size, and a share
    estimated from it is within a percent or two. Runs of 16 float32 fill one cache line, so the sample reads
    16x fewer lines than single entries would; k is a prime above 7, so the runs' starts walk through every
    position of power-of-two and 7x7 layouts instead of one column of them.
    """
    flat = _flat(values)
    if flat.numel() <= SAMPLE_ENTRIES:
        return flat
    stride = _RUN * _prime_at_least(max(11, -(-flat.numel() // SAMPLE_ENTRIES)))
    runs = flat.numel() // stride
    # unfold, not as_strided: a flat view can have any stride (0 for an expanded gradient, 2 for x[..., ::2]).
    return flat[:runs * stride].unfold(0, _RUN, stride).contiguous().view(-1)


def _flat(values: torch.Tensor) -> torch.Tensor:
    """The entries in one dimension: a view in memory order where the tensor is dense in some order of its
    dimensions (a transposed output), so only a truly scattered tensor is copied. Sums and counts ignore order."""
    if not values.is_contiguous():
        by_stride = values.permute(sorted(range(values.dim()), key=lambda d: -values.stride(d)))
        if by_stride.is_contiguous():
            values = by_stride
    return values.reshape(-1)


SAMPLE_ENTRIES = 1 << 14  # under torch's parallel grain (32,768): sample reductions run on one thread
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


def robust_norm(values: torch.Tensor) -> Scalar:
    """The L2 norm of a one-dimensional tensor. On CPU, read at once (that costs nothing there) from a float32 dot product of the entries
    with themselves, redone in float64 where float32 overflowed; on an accelerator, where a read would stall
    the stream and float64 is cheap, a float64 reduction left on the device."""
    if values.device.type != "cpu":
        return torch.linalg.vector_norm(values, dtype=torch.float64)
    # BLAS dot runs at twice the speed of torch's own norm here (0.05 against 0.11 ns per float).
    square = torch.dot(values, values).item()
    if math.isfinite(square):
        return math.sqrt(square)
    return torch.linalg.vector_norm(values, dtype=torch.float64).item()


def grad_sums(grad: torch.Tensor) -> Reduced:
    """L2 norm, the sample's sum of |g|, min, max, the sample's nonzero count and the non-finite count."""
    values = _flat(_reducible(grad.detach()))
    norm = robust_norm(values)
    low, high = torch.aminmax(values)
    sample = sampled(values)  # after the full passes, which leave a tensor that fits the cache in it
    sums = (norm, sample.abs().sum(), low, high, _nonzero(sample), _nonfinite_count(values, norm))
    return Reduced(sums, values.numel(), sample.numel())


def grad_statistics(row: list[float], numel: int, sample_size: int) -> dict[str, float]:
    """GRAD_COLUMNS from grad_sums' row."""
    norm, abs_sum, low, high, nonzero, nonfinite = row
    zero_count = round((1 - nonzero / sample_size) * numel)
    return dict(zip(GRAD_COLUMNS, (norm, abs_sum / sample_size, max(-low, high), zero_count, nonfinite)))


def _nonfinite_count(values: torch.Tensor, norm: Scalar) -> Scalar:
    # Counting is a full pass, and the norm is finite exactly when every entry is (short of overflow past 1e154
    # in float64). Where the norm was already read (CPU), count only when it is not finite; on an accelerator,
    # where reading it would stall the stream, count always.
    if isinstance(norm, float) and math.isfinite(norm):
        return 0
    return values.numel() - torch.isfinite(values).sum()


def _nonzero(sample: torch.Tensor) -> torch.Tensor:
    # Faster than torch.count_nonzero on a sample this size (10 us against 12 us for 16,384 floats on CPU).
    return sample.bool().sum()


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
        self._losses.append(loss.detach())

    def fetch(self) -> tuple[list[list[dict | None]], list[float | None]]:
        """Per batch, per layer, the statistics as plain numbers (None where not measured); the batch losses."""
        slots = [(b, i, slot) for b, batch in enumerate(self._batches) for i, slot in sorted(batch.items())]
        scalars = [value for _, _, slot in slots for value in _padded(slot)] + self._losses
        flat = _on_host(scalars)
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


def _padded(slot: list) -> tuple[Scalar, ...]:
    activation, grad = slot
    return activation.sums + (grad.sums if grad else (math.nan,) * _GRAD_SUMS)


def _on_host(scalars: list[Scalar]) -> list[float]:
    """Every scalar as a float: on an accelerator all tensors travel in one transfer; on CPU each is read."""
    tensors = [value for value in scalars if isinstance(value, torch.Tensor)]
    if tensors and tensors[0].device.type != "cpu":
        read = iter(torch.stack(tensors).double().cpu().tolist())  # stack promotes the mixed dtypes
    else:
        read = (t.item() for t in tensors)
    return [float(next(read)) if isinstance(value, torch.Tensor) else float(value) for value in scalars]


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
