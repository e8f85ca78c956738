"""The advice holds when it is followed: the README's sigmoid MLP rebuilt as each recommendation says, re-probed.

Mean field (Poole et al. 2016, Schoenholz et al. 2017) gives the per-layer gradient gain chi = sigma_w^2
E[phi'(h)^2], h ~ N(0, q*), q* the fixed point of q = sigma_w^2 E[phi(h)^2]: the tests check the theory the texts
cite, then that the recommended change lifts the fitted gradient change above the warning threshold while the
Xavier-only change (not recommended) does not.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from gradaudit.options import AuditOptions
from tests.support.networks import save_torchscript
from worker.diagnosis.diagnose import weight_layers
from worker.diagnosis.flow import WARNING_DECADES
from worker.diagnosis.trend import gradient_trend
from worker.diagnosis.units import SATURATED_WARNING
from worker.engine.audit import audit_network

_Z = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64)
_DENSITY = torch.exp(-_Z ** 2 / 2) / torch.exp(-_Z ** 2 / 2).sum()
_INITS = {"kaiming_normal_(w, nonlinearity='relu')": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
          "xavier_normal_": nn.init.xavier_normal_}


def _mean_field(sigma_w2: float, phi, derivative) -> tuple[float, float]:
    """(chi, share of pre-activations where the derivative is below 1% of its peak) at the fixed point."""
    q = 1.0
    for _ in range(200):
        q = sigma_w2 * float((phi(math.sqrt(q) * _Z) ** 2 * _DENSITY).sum())
    slopes = derivative(math.sqrt(q) * _Z)
    chi = sigma_w2 * float((slopes ** 2 * _DENSITY).sum())
    return chi, float(_DENSITY[slopes < 0.01 * float(derivative(torch.zeros(1, dtype=torch.float64)))].sum())


def _sigmoid_slope(h: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(h) * (1 - torch.sigmoid(h))


def test_no_weight_scale_gives_a_sigmoid_layer_gain_one_without_saturating_it():
    scales = [10.0 ** (k / 8) for k in range(-8, 25)]  # sigma_w^2 from 0.1 to 1000
    points = [(s2, *_mean_field(s2, torch.sigmoid, _sigmoid_slope)) for s2 in scales]
    assert all(chi < 1 for _, chi, saturated in points if saturated < SATURATED_WARNING)
    assert any(chi >= 1 for _, chi, _ in points)  # reached only where the units saturate
    tanh_chi, _ = _mean_field(1.0, torch.tanh, lambda h: 1 - torch.tanh(h) ** 2)
    assert tanh_chi == pytest.approx(1.0, abs=0.02)  # Xavier's variance: tanh at the edge of chaos


def _readme_network(activation=nn.Sigmoid, init=None, swapped: range = range(12), seed: int = 0) -> nn.Sequential:
    """The README's 12-layer sigmoid MLP; the layers in `swapped` get `activation` and `init`."""
    torch.manual_seed(seed)
    layers = []
    for index in range(12):
        linear = nn.Linear(32, 32)
        if init is not None and index in swapped:
            init(linear.weight)
        layers += [linear, activation() if index in swapped else nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(32, 10))


def _audit(network: nn.Sequential, tmp_path):
    path = save_torchscript(network, tmp_path / "deep.pt")
    return audit_network(path, options=AuditOptions(input_shapes={"input": [8, 32]}, batches=2), device="cpu")


def _fitted_change(result) -> float:
    return gradient_trend(weight_layers(result.layers)).change_decades


def _stated_range(text: str) -> range:
    """The hidden-layer indices a 'layers 'a' to 'b'' of the README network covers (Sequential index 2i)."""
    first, last = re.search(r"after layers '(\d+)' to '(\d+)'", text).groups()
    return range(int(first) // 2, int(last) // 2 + 1)


def _stated_init(text: str, after: str = ""):
    """The init call a text names (after the phrase `after`), as the function that applies it."""
    tail = text[text.index(after):]
    return next(init for call, init in sorted(_INITS.items(), key=lambda item: tail.find(item[0]))
                if call in tail)


@pytest.fixture(scope="module")
def advice(tmp_path_factory):
    """The vanishing finding on the README network and its recommendations by code."""
    result = _audit(_readme_network(), tmp_path_factory.mktemp("readme"))
    finding = result.findings[0]
    assert finding["code"] == "vanishing_gradient"
    return finding, {r["code"]: r["text"] for r in finding["recommendations"]}


def test_the_sigmoid_stack_is_told_to_swap_the_activation_not_to_rescale(advice):
    finding, texts = advice
    assert next(iter(texts)) == "use_relu" and not any(code.startswith("reinit_") for code in texts)
    assert f"after layers '{finding['layers'][0]}' to '{finding['layers'][-1]}'" in texts["use_relu"]
    assert "Xavier included" in texts["use_relu"]
    assert f"({len(finding['layers'])} weight layers)" in texts["add_batch_norm"]
    assert "'24'" not in texts["add_batch_norm"]  # the classifier


def test_relu_with_he_as_stated_lifts_the_gradient_above_the_threshold(advice, tmp_path):
    text = advice[1]["use_relu"]
    patched = _audit(_readme_network(nn.ReLU, _stated_init(text), _stated_range(text)), tmp_path)
    assert _fitted_change(patched) > -WARNING_DECADES
    assert "vanishing_gradient" not in {f["code"] for f in patched.findings}


def test_tanh_with_xavier_as_stated_lifts_the_gradient_above_the_threshold(advice, tmp_path):
    text = advice[1]["use_relu"]
    init = _stated_init(text, "bounded activation")
    patched = _audit(_readme_network(nn.Tanh, init, _stated_range(text)), tmp_path)
    assert _fitted_change(patched) > -WARNING_DECADES


def test_xavier_alone_leaves_the_sigmoid_stack_vanishing_as_mean_field_predicts(tmp_path):
    rescaled = _audit(_readme_network(nn.Sigmoid, nn.init.xavier_normal_), tmp_path)
    change = _fitted_change(rescaled)
    assert change <= -WARNING_DECADES and rescaled.findings[0]["code"] == "vanishing_gradient"
    chi, _ = _mean_field(1.0, torch.sigmoid, _sigmoid_slope)  # xavier_normal_ on 32x32: sigma_w^2 = 1
    per_layer = -0.5 * math.log10(chi)  # decades of gradient norm lost per layer
    assert -change / 12 == pytest.approx(per_layer, abs=0.15)
