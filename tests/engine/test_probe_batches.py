"""The probe's batches: count, seeds, input rules and the mean parameter gradient, all recorded in setup."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradaudit.options import AuditOptions
from tests.support.networks import export_onnx, mlp, token_network
from worker.engine.audit import audit_network
from worker.engine.output_stats import (
    Recorder,
    activation_statistics,
    activation_sums,
    flat_entries,
    grad_statistics,
    grad_sums,
    moved_at_once,
)
from worker.engine.sample_rows import SAMPLE_ENTRIES, SampleRows, sample_view


def test_batches_and_seeds_are_recorded(mlp_onnx):
    result = audit_network(mlp_onnx, options=AuditOptions(seed=10, batches=4), device="cpu")
    setup = result.setup
    assert (setup["batches"], setup["seeds"], setup["seed"]) == (4, [10, 11, 12, 13], 10)
    assert setup["inputs"] == {"x": "standard normal"}
    assert len(setup["batch_losses"]) == 4 and setup["loss_value"] == pytest.approx(np.mean(setup["batch_losses"]))
    assert setup["parameter_gradients"].startswith("mean over the 4 batches")
    assert all([row["seed"] for row in layer.batch_rows] == [10, 11, 12, 13] for layer in result.layers)


def test_parameter_gradients_are_the_mean_over_batches(mlp_script):
    result = audit_network(mlp_script, options=AuditOptions(input_shapes={"input": [8, 6]}, seed=2, loss="sum",
                                                             batches=3), device="cpu")
    network = mlp()
    for seed in (2, 3, 4):
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(seed))
        (network(x).sum() / 3).backward()
    first = network[0]
    expected = torch.cat([first.weight.grad.flatten(), first.bias.grad.flatten()]).double().norm().item()
    assert result.layers[0].grad_norm == pytest.approx(expected, rel=1e-5)


def test_an_uploaded_batch_is_the_only_batch(tmp_path, mlp_onnx):
    np.savez(tmp_path / "batch.npz", x=np.ones((3, 6), dtype=np.float32))
    result = audit_network(mlp_onnx, options=AuditOptions(batches=5), device="cpu", inputs_path=tmp_path / "batch.npz")
    assert (result.setup["batches"], result.setup["seeds"]) == (1, [0])
    assert "uploaded .npz" in result.setup["inputs"]


def test_token_inputs_stay_within_the_vocabulary_and_say_so(tmp_path):
    path = export_onnx(token_network(), torch.randint(0, 50, (2, 5)), tmp_path / "tok.onnx", name="tokens",
                       dynamic={0: "b"})
    result = audit_network(path, options=AuditOptions(input_shapes={"tokens": [4, 5]}), device="cpu")
    assert result.setup["inputs"] == {"tokens": "integers uniform over [0, 50), the rows of the embedding table "
                                                "it indexes"}


def activation_row(values: torch.Tensor, kind: str) -> list[float]:
    samples = SampleRows()
    reduced = activation_sums(values, kind, samples)
    totals = samples.totals()[0][reduced.row].tolist()
    exact = [float(v) for v in reduced.exact]
    return list(activation_statistics(exact, totals, reduced.numel, reduced.sampled).values())


def grad_row(values: torch.Tensor) -> list[float]:
    samples = SampleRows()
    reduced = grad_sums(values, samples)
    totals = samples.totals()[0][reduced.row].tolist()
    return list(grad_statistics([float(v) for v in reduced.exact], totals, reduced.numel, reduced.sampled).values())


def sampled(values: torch.Tensor) -> torch.Tensor:
    return sample_view(values.flatten()).flatten()


def test_rows_match_plain_torch():
    values = torch.tensor([[0.0, -2.0, 3.0], [0.0, 8.0, -7.0]])
    activation = activation_row(values, "Tanh")
    assert activation[:4] == pytest.approx([6, values.mean().item(), values.std(correction=0).item(), 2 / 6])
    assert activation[4] == pytest.approx(4 / 6)  # |x| > 0.995 for tanh: -2, 3, 8, -7
    assert math.isnan(activation_row(values, "Relu")[4])
    grad = grad_row(torch.tensor([0.0, 3.0, -4.0, float("nan")]))
    assert math.isnan(grad[0]) and grad[3:] == [1, 1]
    assert grad_row(torch.tensor([0.0, 3.0, -4.0, 0.0])) == pytest.approx([5.0, 7 / 4, 4.0, 2, 0])


def test_large_tensors_are_estimated_from_a_sample_of_cache_line_runs():
    values = torch.randn(64, 256, 7, 7).relu()  # 802,816 entries, about half exactly zero
    sample = sampled(values)
    assert 2 ** 14 * 0.75 < sample.numel() <= 2 ** 14
    assert (sample == 0).float().mean().item() == pytest.approx((values == 0).float().mean().item(), abs=0.01)
    _, mean, std, _, _ = activation_row(values, "Relu")
    assert math.hypot(mean, std) == pytest.approx(values.square().mean().sqrt().item(), rel=1e-5)  # RMS: exact
    assert mean == pytest.approx(values.mean().item(), abs=0.02 * std)


def test_max_abs_gradient_is_exact_up_to_a_sample_and_the_largest_sampled_entry_beyond():
    small = torch.randn(SAMPLE_ENTRIES, generator=torch.Generator().manual_seed(0))
    assert grad_row(small)[2] == pytest.approx(small.abs().max().item())
    large = torch.randn(64, 256, 7, 7, generator=torch.Generator().manual_seed(0))
    assert grad_row(large)[2] == pytest.approx(sampled(large).abs().max().item())
    assert grad_row(large)[2] <= large.abs().max().item()


def test_sigmoid_saturation_threshold_is_one_percent_of_the_peak_derivative():
    edge = 2 * math.atanh(math.sqrt(0.99))  # sigmoid'(x) = 0.01 * sigmoid'(0) here
    x = torch.tensor([edge - 0.01, edge + 0.01, -edge - 0.01, 0.0])
    assert activation_row(torch.sigmoid(x), "Sigmoid")[4] == pytest.approx(2 / 4)


def test_recorder_without_gradient_reports_none_for_the_gradient():
    recorder = Recorder(["Relu", "Relu"])
    recorder.start_batch()
    recorder.observe(0, torch.ones(2, 2))  # does not require grad: never reached by backward
    recorder.observe(1, torch.tensor([1, 2]))  # integers are not observed
    recorder.record_loss(torch.tensor(0.5))
    table, losses = recorder.fetch()
    assert table[0][1] is None and losses == [0.5]
    assert table[0][0]["activation_mean"] == 1.0 and table[0][0]["output_grad_norm"] is None
    assert table[0][0]["output_grad_zero_count"] is None


def test_a_transposed_output_is_sampled_without_copying_it_whole():
    values = torch.randn(64, 32, 96).relu()
    transposed = values.transpose(1, 2)  # dense, but not contiguous
    assert flat_entries(transposed).data_ptr() == values.data_ptr()
    sample = sampled(flat_entries(transposed))
    assert sample.numel() <= 2 ** 14
    assert (sample == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert activation_row(transposed, "Relu")[:4] == pytest.approx(activation_row(values, "Relu")[:4])


def test_strided_and_expanded_tensors_are_sampled_from_their_own_entries():
    pairs = torch.zeros(40000, 2)
    pairs[:, 1] = 1  # every other stored float is 0; the column of ones has stride 2
    _, mean, std, zero_fraction, _ = activation_row(pairs[:, 1], "Relu")
    assert (mean, std, zero_fraction) == (1.0, 0.0, 0.0)
    expanded = torch.ones(()).expand(3, 20000)  # the gradient of a sum: every stride 0
    assert grad_row(expanded)[:3] == pytest.approx([60000 ** 0.5, 1.0, 1.0])


def test_a_nan_the_sample_misses_still_makes_the_mean_unknown():
    values = torch.randn(100_000)
    values[100] = float("nan")  # far from the sample's runs
    _, mean, std, _, _ = activation_row(values, "Relu")
    assert math.isnan(mean) and math.isnan(std)


def test_an_accelerators_values_are_unpacked_from_one_transfer_in_order():
    tensors = [torch.tensor(1.5, dtype=torch.float64), torch.tensor(-2.0), torch.tensor(7)]
    rows = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], dtype=torch.float64)  # a row per TOTALS
    assert moved_at_once(tensors, rows) == ([1.5, -2.0, 7.0], [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert moved_at_once([], rows[:0]) == ([], [])
