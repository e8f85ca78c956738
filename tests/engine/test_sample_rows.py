"""Samples side by side: each row's totals are its own sample's, across chunks, dtypes and reused rows."""

from __future__ import annotations

import pytest
import torch

from worker.engine.sample_rows import SAMPLE_ENTRIES, SampleRows, sample_view


def expected_totals(values: torch.Tensor) -> list[float]:
    sample = sample_view(values).flatten().double()
    return [sample.sum().item(), sample.abs().sum().item(), float(torch.count_nonzero(sample)),
            sample.abs().max().item()]


def test_rows_past_a_chunk_and_shorter_than_the_rows_before_them_keep_their_own_totals():
    generator = torch.Generator().manual_seed(0)
    # Long rows first, then short ones that reuse the chunk's rows: stale entries past them would be counted.
    tensors = [torch.randn(100_000, generator=generator).relu() for _ in range(40)]
    tensors += [torch.randn(n, generator=generator) - 0.5 for n in (7, 300, 5000) * 15]
    samples = SampleRows()
    rows = [samples.add(values)[0] for values in tensors]
    totals = torch.cat(samples.totals())
    assert rows == list(range(len(tensors)))
    for row, values in zip(rows, tensors):
        assert totals[row].tolist() == pytest.approx(expected_totals(values), rel=1e-5, abs=1e-3)


def test_a_change_of_dtype_starts_a_new_chunk_and_keeps_the_order():
    samples = SampleRows()
    tensors = [torch.full((10,), 2.0), torch.full((3,), -1.0, dtype=torch.float64), torch.zeros(SAMPLE_ENTRIES * 40)]
    for values in tensors:
        samples.add(values)
    totals = torch.cat(samples.totals()).tolist()
    assert totals == [[20.0, 20.0, 10.0, 2.0], [-3.0, 3.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0]]


def test_the_last_sample_is_the_row_the_totals_are_taken_from():
    samples = SampleRows()
    values = torch.arange(1.0, 50_001.0)
    _, size = samples.add(values)
    sample = samples.last_sample()
    assert size == sample.numel() and torch.equal(sample, sample_view(values).flatten())
    expected = sample.double().sum().item()  # before totals(), which clears the rows for reuse
    assert torch.cat(samples.totals())[0, 0].item() == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negative_zero_counts_as_zero_and_nan_as_nonzero(dtype):
    samples = SampleRows()
    samples.add(torch.tensor([0.0, -0.0, float("nan"), 1e-40, -3.0], dtype=dtype))
    assert torch.cat(samples.totals())[0, 2].item() == 3  # NaN, a denormal and -3
