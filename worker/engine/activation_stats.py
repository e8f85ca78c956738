"""Statistics of every tapped layer output and of the gradient with respect to it, kept on the device.

Each tensor is reduced once, where it is produced, to a short row; rows stay on the device until
`Recorder.fetch`, which moves all of them (and the batch losses) to the host in one transfer.
"""

from __future__ import annotations

import functools
import math

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


def activation_row(output: torch.Tensor, kind: str | None) -> torch.Tensor:
    """numel, mean, std, zero fraction and (Sigmoid/Tanh only, else NaN) saturated fraction, as float64."""
    values = _reducible(output.detach())
    count = values.numel()
    sample = sampled(values)
    mean = fast_sum(values).double() / count
    square_mean = robust_norm(values) ** 2 / count
    zero_fraction = 1 - torch.count_nonzero(sample).double() / sample.numel()
    saturated = _saturated_count(sample, kind) / sample.numel() if kind in SATURATING_KINDS else mean * math.nan
    std = (square_mean - mean * mean).clamp(min=0).sqrt()
    numel = torch.full((), count, dtype=torch.float64, device=values.device)
    return torch.stack([numel, mean, std, zero_fraction, saturated]).double()


def sampled(values: torch.Tensor) -> torch.Tensor:
    """Every k-th entry, about SAMPLE_ENTRIES of them; all entries of a smaller tensor.

    Counting is the costliest reduction on CPU (10 ms for 4M floats, against 0.1 ms for a strided sample),
    and a share estimated from 65,536 entries is within half a percent. k is a prime above 7, so the
    sample walks through every position of power-of-two and 7x7 layouts instead of one column of them.
    """
    flat = values.reshape(-1)
    if flat.numel() <= 2 * SAMPLE_ENTRIES:
        return flat
    return flat[::_prime_at_least(max(11, flat.numel() // SAMPLE_ENTRIES))]


SAMPLE_ENTRIES = 1 << 16
SAMPLING_RULE = (f"norms, means, std and max |g| are exact; the zero and saturated fractions and mean |g| of "
                 f"tensors over {2 * SAMPLE_ENTRIES:,} entries are estimated from every k-th entry "
                 f"(about {SAMPLE_ENTRIES:,}, k prime)")


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


def fast_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of every entry, as a matrix-vector product with ones where the size allows.

    On CPU, BLAS's gemv sums several times faster than torch's own sum (1.5 ms against 8 ms for 4M
    floats here), and float64 reductions cost 4x more again; the float32 partial sums of gemv carry
    about seven significant digits, plenty for statistics of an audit.
    """
    flat = values.reshape(-1)
    whole = flat.numel() - flat.numel() % _SUM_WIDTH
    if whole == 0:
        return flat.sum()
    rows = torch.mv(flat[:whole].view(-1, _SUM_WIDTH), _ones(values.dtype, values.device))
    return rows.sum() + flat[whole:].sum()


_SUM_WIDTH = 1024


@functools.lru_cache(maxsize=8)
def _ones(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.ones(_SUM_WIDTH, dtype=dtype, device=device)


def grad_row(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm, mean |g|, max |g|, exactly-zero count and non-finite count of one gradient, as float64."""
    values = _reducible(grad.detach())
    count = values.numel()
    sample = sampled(values)
    norm = robust_norm(values)
    low, high = torch.aminmax(values)
    zero_share = 1 - torch.count_nonzero(sample).double() / sample.numel()
    return torch.stack([
        norm,
        sample.abs().sum().double() / sample.numel(),
        torch.maximum(-low, high).double(),
        (zero_share * count).round(),
        _nonfinite_count(values, norm),
    ]).double()


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
    """Per probe batch and tapped layer: the device rows of output and output-gradient statistics."""

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
        slot = [activation_row(tensor, self._kinds[index]), None]
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
        width = len(ACTIVATION_COLUMNS) + len(GRAD_COLUMNS)
        table: list[list[dict | None]] = [[None] * len(self._kinds) for _ in self._batches]
        for n, (batch, index, slot) in enumerate(slots):
            table[batch][index] = _named(flat[n * width:(n + 1) * width], reached=slot[1] is not None)
        return table, [_finite_or_none(v) for v in flat[len(slots) * width:]]


def _grad_observer(slot: list):
    def observe(grad: torch.Tensor | None) -> None:
        if grad is not None:
            slot[1] = grad_row(grad)

    return observe


def _padded(slot: list) -> torch.Tensor:
    activation, grad = slot
    return torch.cat([activation, grad if grad is not None else activation.new_full((len(GRAD_COLUMNS),), math.nan)])


def _named(values: list[float], *, reached: bool) -> dict:
    row = dict(zip(ACTIVATION_COLUMNS + GRAD_COLUMNS, values))
    row["numel"] = int(row["numel"])
    for key in ("output_grad_zero_count", "output_grad_nonfinite"):
        row[key] = int(row[key]) if reached else None
    row["output_grad_zero_fraction"] = row["output_grad_zero_count"] / row["numel"] if reached else None
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
