"""Detectors on their own: graph structure, the recurrence measurement, dead-unit shares, remedies."""

from __future__ import annotations

import torch
from torch import nn

from bench.baselines import autotrainer, sagemaker
from tests.diagnosis import networks as n
from tests.engine.conftest import save_torchscript
from worker.engine.detectors import recurrent
from worker.engine.detectors.common import Context
from worker.engine.detectors.facts import NetworkFacts
from worker.engine.detectors.graph import Structure, structure
from worker.engine.detectors.units import dead_shares
from worker.engine.detectors.weights import RecurrenceFacts, WeightFacts
from worker.engine.diagnose import diagnose
from worker.engine.load import load_network
from worker.engine.result import LayerStats


def _stats(name, kind, depth, parameters=0, grad_zero=0.0, zeros=None, numel=64):
    row = {"numel": numel, "activation_mean": 0.1, "activation_std": 1.0, "activation_zero_fraction": zeros}
    probes = [] if zeros is None else [row] * 3
    return LayerStats(name=name, kind=kind, depth=depth, parameters=parameters, weight_norm=1.0, grad_norm=1.0,
                      grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0, grad_zero_fraction=grad_zero,
                      grad_nonfinite=0, grad_to_weight=1.0, probes=probes)


def test_shortest_gradient_path_counts_weight_layers_and_sees_skips(tmp_path):
    torch.manual_seed(0)
    plain = load_network(save_torchscript(n.plain_cnn(6, 4, "he"), tmp_path / "p.pt", torch.randn(1, 3, 8, 8)))
    residual = load_network(save_torchscript(n.ResidualCNN(4, 4, False), tmp_path / "r.pt", torch.randn(1, 3, 8, 8)))
    assert (structure(plain).shortest_path, structure(plain).skips) == (7, 0)
    assert structure(residual).skips == 4 and structure(residual).shortest_path == 2  # stem and head only
    assert structure(residual).normalizations == 0


def test_recurrence_decay_and_growth_are_measured_on_the_matrices():
    torch.manual_seed(0)
    for radius, sign in ((0.5, -1), (3.0, 1)):
        rnn = n.Recurrent("rnn", 4, 32, radius).rnn
        facts = RecurrenceFacts(rnn.weight_ih_l0.detach().double(), rnn.weight_hh_l0.detach().double(),
                                (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().double())
        change, slope, length = recurrent._measure(facts, 40)
        assert sign * change > recurrent.WARNING_DECADES and length == 40


def test_dead_share_discounts_zero_gradient_columns_from_dead_inputs():
    layers = [_stats("fc1", "Linear", 0, 10, grad_zero=0.5), _stats("relu1", "ReLU", 1, zeros=0.75),
              _stats("fc2", "Linear", 2, 10, grad_zero=0.75), _stats("relu2", "ReLU", 3, zeros=0.6)]
    shares = dead_shares(Context(layers, [s for s in layers if s.parameters]))
    assert shares["relu1"] == 0.5  # half the rows zero: half the units dead
    assert abs(shares["relu2"] - 0.5) < 1e-9  # 1 - (1 - 0.75) / (1 - 0.5): the other zeros are dead inputs


def test_sparse_but_live_units_are_not_dead():
    layers = [_stats("fc1", "Linear", 0, 10, grad_zero=0.0), _stats("relu1", "ReLU", 1, zeros=0.95)]
    assert diagnose(layers, loss_finite=True, op_counts={}, weight_nonfinite={}, facts=NetworkFacts()) == []


def test_baselines_apply_their_published_rules():
    torch.manual_seed(0)
    dead = n.mlp(4, 32, "relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), bias=-6.0)
    assert "dead_relu" in sagemaker(dead, [8, 32]) and "dead_relu" in autotrainer(dead, [8, 32])
    healthy = n.mlp(3, 32, "relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), bias=0.0)
    assert sagemaker(healthy, [8, 32]) == set() and autotrainer(healthy, [8, 32]) == set()
    saturated = n.mlp(3, 32, "tanh", n.gaussian(400.0))
    assert "saturated_activation" in sagemaker(saturated, [8, 32])


def _probed(depth, output_grad, activation_rms, parameters=4096):
    row = {"output_grad_norm": output_grad, "activation_mean": 0.0, "activation_std": activation_rms}
    return LayerStats(name=f"fc{depth}", kind="Linear", depth=depth, parameters=parameters, weight_norm=1.0,
                      grad_norm=1.0, grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0, grad_zero_fraction=0.0,
                      grad_nonfinite=0, grad_to_weight=1.0, probes=[row] * 3)


def _codes(layers, facts=None):
    return {f["code"] for f in diagnose(layers, loss_finite=True, op_counts={}, weight_nonfinite={},
                                        facts=facts or NetworkFacts())}


def test_one_step_at_the_output_end_is_not_a_vanishing_trend():
    # The stack loses 0.1 decade per layer, then the gradient drops 2 decades into the last hidden layer.
    step = [_probed(d, 10.0 ** (-2.6 + 0.1 * d), 1.0) for d in range(7)] + [_probed(7, 1.0, 1.0)]
    steady = [_probed(d, 10.0 ** (-2.6 + 0.3 * d), 1.0) for d in range(8)]
    assert _codes(step) == set()
    assert _codes(steady) == {"vanishing_gradient"}


def test_initialisation_is_blamed_only_when_the_forward_drifts_the_way_the_weights_predict():
    # Weights twice the linear expectation predict 2.1 decades of growth over the layers after the first; the
    # gradient grows 2 decades toward the input. Folded normalisation keeps the forward at RMS 1 instead.
    weights = {f"fc{d}": WeightFacts(fan_in=64, rms=2.0 / 8.0, constant=False, bias_mean=0.0) for d in range(8)}
    facts = NetworkFacts(weights=weights, structure=Structure(8, 0, 0, 8))
    grads = [10.0 ** (2.0 - 2.0 * d / 7) for d in range(8)]
    in_scale = [_probed(d, g, 1.0) for d, g in enumerate(grads)]
    growing = [_probed(d, g, 2.0 ** d) for d, g in enumerate(grads)]
    assert "poor_initialization" not in _codes(in_scale, facts)
    assert "poor_initialization" in _codes(growing, facts)
