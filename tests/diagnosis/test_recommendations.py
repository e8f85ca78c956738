"""Recommendations on facts built in the test: the layers they name and the initialisation theory gives each
activation; no torch, no engine."""

from __future__ import annotations

import re

import pytest

from gradaudit.schema import LayerRecord
from worker.diagnosis.common import Context
from worker.diagnosis.diagnose import diagnose, weight_layers
from worker.diagnosis.facts import ACTIVATION, WEIGHT, LayerRole, NetworkFacts, Structure, WeightFacts
from worker.diagnosis.remedy_layers import named


def _layer(name: str, depth: int, parameters: int, output_grad: float | None = None) -> LayerRecord:
    row = {"numel": 256, "activation_mean": 0.0, "activation_std": 1.0, "activation_zero_fraction": 0.0,
           "activation_saturated_fraction": 0.0, "output_grad_norm": output_grad}
    return LayerRecord(name=name, kind="Linear" if parameters else "Act", depth=depth, parameters=parameters,
                      weight_norm=1.0, grad_norm=1.0, grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0,
                      grad_zero_fraction=0.0, grad_nonfinite=0, grad_to_weight=1.0, batch_rows=[row] * 3)


def _mlp(activation: str | None, hidden: int = 8, decay: float = 0.5, constant: bool = False) -> NetworkFacts:
    """hidden Linear(+activation) blocks and a classifier; the output gradient falls `decay` decades per layer
    toward the input; weights at the He/Xavier scale, or all one value."""
    layers, roles, depth = [], {}, 0
    for index in range(hidden + 1):
        name = f"fc{index}"
        layers.append(_layer(name, depth, 1024, 10.0 ** (decay * (index - hidden))))
        roles[name], depth = LayerRole(WEIGHT), depth + 1
        if activation and index < hidden:
            layers.append(_layer(f"act{index}", depth, 0))
            roles[f"act{index}"], depth = LayerRole(ACTIVATION, activation), depth + 1
    weights = {f"fc{i}": WeightFacts(fan_in=32, rms=0.1 if constant else 1 / 32 ** 0.5, constant=constant,
                                     bias_mean=0.0) for i in range(hidden + 1)}
    return NetworkFacts(layers=layers, roles=roles, weights=weights, structure=Structure(hidden + 1, 0, 0, hidden + 1),
                        batch_size=8)


def _by_code(facts: NetworkFacts) -> dict[str, dict]:
    return {f["code"]: f for f in diagnose(facts)}


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"'(fc\d+|act\d+)'", text))


def test_a_vanishing_sigmoid_stack_is_told_to_swap_the_activation_never_to_rescale():
    finding = _by_code(_mlp("sigmoid"))["vanishing_gradient"]
    codes = [r["code"] for r in finding["recommendations"]]
    assert codes[0] == "use_relu" and not any(code.startswith("reinit_") for code in codes)
    text = finding["recommendations"][0]["text"]
    assert "kaiming_normal_" in text and "Xavier included" in text and "tanh" in text
    assert f"{abs(finding['evidence']['slope_decades_per_layer']):.2f} decades per weight layer" in text


def test_every_named_layer_is_one_of_the_finding_s_and_normalization_skips_the_classifier():
    for activation in ("sigmoid", "tanh", "relu"):
        for finding in diagnose(_mlp(activation)):
            for recommendation in finding["recommendations"]:
                assert _quoted(recommendation["text"]) <= set(finding["layers"]), (activation, recommendation)
    symmetric = _by_code(_mlp("tanh", decay=0.0, constant=True))["poor_initialization"]  # names every layer
    norm = next(r for r in symmetric["recommendations"] if r["code"] == "add_batch_norm")
    assert "fc8" in symmetric["layers"] and "'fc8'" not in norm["text"]  # the classifier
    assert "after layers 'fc0' to 'fc7' (8 weight layers)" in norm["text"]


def test_normalization_goes_only_after_weight_layers_an_activation_follows():
    linear = _by_code(_mlp(None))["vanishing_gradient"]["recommendations"]
    assert "add_batch_norm" not in [r["code"] for r in linear]


@pytest.mark.parametrize(("activation", "code", "call"), [
    ("relu", "reinit_he", "kaiming_normal_(w, nonlinearity='relu')"),
    ("gelu", "reinit_he", "kaiming_normal_(w, nonlinearity='relu')"),
    ("tanh", "reinit_xavier", "xavier_normal_(w)"),
    ("selu", "reinit_xavier", "kaiming_normal_(w, nonlinearity='linear')"),
    (None, "reinit_orthogonal", "orthogonal_(w)"),
])
def test_symmetric_weights_get_the_init_whose_gain_is_one_for_their_activation(activation, code, call):
    finding = _by_code(_mlp(activation, decay=0.0, constant=True))["poor_initialization"]
    first = finding["recommendations"][0]
    assert first["code"] == code and call in first["text"]


def test_symmetric_sigmoid_weights_get_the_activation_swap_not_xavier():
    finding = _by_code(_mlp("sigmoid", decay=0.0, constant=True))["poor_initialization"]
    assert finding["recommendations"][0]["code"] == "use_relu"
    assert "reinit_xavier" not in [r["code"] for r in finding["recommendations"]]


def test_a_subset_that_skips_layers_says_which():
    facts = _mlp("relu")
    ctx = Context(facts.layers, weight_layers(facts.layers), facts)
    assert named(ctx, ["fc0", "fc1", "fc2"]) == "layers 'fc0' to 'fc2'"
    assert named(ctx, ["fc0", "fc1", "fc3", "fc4"]) == "layers 'fc0' to 'fc4' except 'fc2'"
    assert named(ctx, ["act0", "act4"]) == "layers 'act0' and 'act4'"
