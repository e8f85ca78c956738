"""The facts the engine hands the diagnosis: graph structure and the recurrence measured on its matrices."""

from __future__ import annotations

import torch

from suites import networks as n
from tests.support.networks import save_torchscript
from worker.diagnosis import recurrent
from worker.diagnosis.facts import RecurrenceFacts
from worker.engine.facts import _log_gradient_norms
from worker.engine.formats import load_network


def test_shortest_gradient_path_counts_weight_layers_and_sees_skips(tmp_path):
    torch.manual_seed(0)
    plain = load_network(save_torchscript(n.plain_cnn(6, 4, "he"), tmp_path / "p.pt", torch.randn(1, 3, 8, 8)))
    residual = load_network(save_torchscript(n.ResidualCNN(4, 4, False), tmp_path / "r.pt", torch.randn(1, 3, 8, 8)))
    assert (plain.structure.shortest_path, plain.structure.skips) == (7, 0)
    assert residual.structure.skips == 4 and residual.structure.shortest_path == 2  # stem and head only
    assert residual.structure.normalizations == 0


def test_recurrence_decay_and_growth_are_measured_on_the_matrices():
    torch.manual_seed(0)
    for radius, sign in ((0.5, -1), (3.0, 1)):
        rnn = n.Recurrent("rnn", 4, 32, radius).rnn
        logs = _log_gradient_norms(rnn.weight_ih_l0.detach().double(), rnn.weight_hh_l0.detach().double(),
                                   (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().double(), 40)
        change, slope, length = recurrent._fit(RecurrenceFacts(40, logs))
        assert sign * change > recurrent.WARNING_DECADES and length == 40
