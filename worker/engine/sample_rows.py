"""Samples of many tensors side by side, one row each, so that their sums and counts cost a few operations per
chunk of rows instead of a few per tensor.

On CPU a small operation inside a backward pass costs several times what it costs on its own, whatever its
size, so per-tensor sums and counts of the samples were a large share of the probe's overhead (figures:
docs/engine.md).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

SAMPLE_ENTRIES = 1 << 14  # under torch's parallel grain (32,768): sample reductions run on one thread
SAMPLE_RUN = 16  # 16 float32 fill one cache line
_CHUNK_ROWS = 32  # 2 MiB of float32 rows: fits the cache, and a chunk's reductions are cheap beside 32 tensors'
TOTALS = ("sum", "abs_sum", "nonzero", "abs_max")
_SAME_WIDTH_INTEGER = {torch.float32: torch.int32, torch.float64: torch.int64}


def sample_view(values: torch.Tensor) -> torch.Tensor:
    """A view of every k-th run of SAMPLE_RUN consecutive entries of a one-dimensional tensor, at most
    SAMPLE_ENTRIES of them (at least a k-th), as rows of SAMPLE_RUN; all entries of a tensor no larger than that.

    A sample costs the same at any size, far less than a full pass over a large tensor, and a share estimated
    from it is close to the exact one (figures: docs/engine.md). Runs of whole cache lines read 16x fewer lines
    than single entries would; k is a prime above 7, so the runs' starts walk through every position of
    power-of-two and 7x7 layouts instead of one column of them.
    """
    return _sampled(values, _sample_layout(values.numel()))


class _Layout(NamedTuple):
    """Where a sample of a tensor of some size lies: its shape, its strides in entries of the flat tensor, and
    its strides once copied into a row."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    row_strides: tuple[int, ...]
    size: int


@functools.lru_cache(maxsize=1024)
def _sample_layout(numel: int) -> _Layout:
    """The layout of a sample of `numel` entries: looked up by size, cheaper than reading it off the tensors."""
    if numel <= SAMPLE_ENTRIES:
        return _Layout((numel,), (1,), (1,), numel)
    step = _run_step(numel)
    runs = numel // step
    return _Layout((runs, SAMPLE_RUN), (step, 1), (SAMPLE_RUN, 1), runs * SAMPLE_RUN)


def _sampled(values: torch.Tensor, layout: _Layout) -> torch.Tensor:
    # Strides in units of the flat view's own stride: that can be anything (0 for an expanded gradient, 2 for
    # x[..., ::2]), and as_strided keeps the view's storage offset.
    unit = values.stride(0)
    strides = layout.strides if unit == 1 else tuple(stride * unit for stride in layout.strides)
    return values.as_strided(layout.shape, strides)


def _run_step(numel: int) -> int:
    """Entries from one run's start to the next's."""
    return SAMPLE_RUN * _prime_at_least(max(11, -(-numel // SAMPLE_ENTRIES)))


def _prime_at_least(n: int) -> int:
    while any(n % d == 0 for d in range(2, int(n ** 0.5) + 1)):
        n += 1
    return n


class SampleRows:
    """Rows of zero-padded samples in a chunk on the tensors' device; a full chunk is reduced to each row's
    TOTALS (float64, still on the device) and reused."""

    def __init__(self):
        self._chunk: torch.Tensor | None = None
        self._kind: tuple[torch.device, torch.dtype] | None = None  # the chunk's device and dtype
        self._chunk_rows: tuple[torch.Tensor, ...] = ()  # made once: taking a row from these is cheaper than indexing
        self._filled = 0
        self._rows = 0
        self._last_size = 0
        self._widest = 0  # the longest sample in the chunk: the rest of its rows is still zero
        self._totals: list[torch.Tensor] = []

    def add(self, values: torch.Tensor) -> tuple[int, int]:
        """Copy the sample of a one-dimensional tensor into the next row: the row's number and the sample's size.

        A torch call here costs several times more inside a step on CPU than on its own (the step's kernels
        leave the interpreter's caches cold): hence as few of them as will do, the sample's shape and strides
        looked up by size instead of read off the tensors.
        """
        self._make_room(values)
        layout = _sample_layout(values.numel())
        row = self._chunk_rows[self._filled]
        row.as_strided(layout.shape, layout.row_strides).copy_(_sampled(values, layout))
        self._filled += 1
        self._rows += 1
        self._last_size = layout.size
        self._widest = max(self._widest, layout.size)
        return self._rows - 1, layout.size

    def last_sample(self) -> torch.Tensor:
        """The sample the last add copied, valid until the next add."""
        return self._chunk_rows[self._filled - 1][:self._last_size]

    def totals(self) -> list[torch.Tensor]:
        """Every row's TOTALS so far, in row order, as (rows, len(TOTALS)) tensors."""
        self._reduce()
        return list(self._totals)

    def _make_room(self, values: torch.Tensor) -> None:
        kind = (values.device, values.dtype)
        if self._chunk is not None and kind != self._kind:
            self._reduce()
            self._chunk = None
        if self._chunk is None:
            self._chunk = values.new_zeros(_CHUNK_ROWS, SAMPLE_ENTRIES)
            self._kind = kind
            self._chunk_rows = self._chunk.unbind(0)
        elif self._filled == _CHUNK_ROWS:
            self._reduce()

    def _reduce(self) -> None:
        if not self._filled:
            return
        rows = self._chunk[:self._filled, :self._widest]
        sums = rows.sum(1)
        # In place from here on: the rows are cleared for reuse anyway, so a new 2 MiB buffer for |x| would be an
        # allocation and a write for nothing.
        magnitudes = rows.abs_()
        abs_sums = magnitudes.sum(1)
        abs_maxes = magnitudes.amax(1)  # before the bits below are clamped in place
        # A float is nonzero exactly when its bits without the sign are (NaN included): two integer passes,
        # faster than torch.count_nonzero on CPU. The zero padding adds nothing to any of the totals.
        bits = magnitudes.view(_SAME_WIDTH_INTEGER[rows.dtype])
        nonzero = bits.clamp_(max=1).sum(1, dtype=torch.int32)
        # Counts up to SAMPLE_ENTRIES are exact in the rows' float dtype; one widening instead of three.
        totals = torch.stack((sums, abs_sums, nonzero.to(rows.dtype), abs_maxes), dim=1)
        self._totals.append(totals.double())
        rows.zero_()
        self._filled = self._widest = 0
