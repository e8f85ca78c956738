"""Detectors on facts built in the test: dead-unit shares, trends, initialisation; no torch, no engine."""

from __future__ import annotations

from dataclasses import replace

from gradaudit.schema import LayerRecord
from worker.diagnosis.common import Context
from worker.diagnosis.diagnose import diagnose
from worker.diagnosis.facts import ACTIVATION, NORMALIZATION, WEIGHT, LayerRole, NetworkFacts, Structure, WeightFacts
from worker.diagnosis.units import dead_shares

ROLES = {"Linear": LayerRole(WEIGHT), "ReLU": LayerRole(ACTIVATION, "relu")}


def _stats(name, kind, depth, parameters=0, grad_zero=0.0, zeros=None, numel=64):
    row = {"numel": numel, "activation_mean": 0.1, "activation_std": 1.0, "activation_zero_fraction": zeros}
    probes = [] if zeros is None else [row] * 3
    return LayerRecord(name=name, kind=kind, depth=depth, parameters=parameters, weight_norm=1.0, grad_norm=1.0,
                      grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0, grad_zero_fraction=grad_zero,
                      grad_nonfinite=0, grad_to_weight=1.0, batch_rows=probes)


def test_dead_share_discounts_zero_gradient_columns_from_dead_inputs():
    layers = [_stats("fc1", "Linear", 0, 10, grad_zero=0.5), _stats("relu1", "ReLU", 1, zeros=0.75),
              _stats("fc2", "Linear", 2, 10, grad_zero=0.75), _stats("relu2", "ReLU", 3, zeros=0.6)]
    shares = dead_shares(Context(layers, [s for s in layers if s.parameters], _facts(layers)))
    assert shares["relu1"] == 0.5  # half the rows zero: half the units dead
    assert abs(shares["relu2"] - 0.5) < 1e-9  # 1 - (1 - 0.75) / (1 - 0.5): the other zeros are dead inputs


def test_sparse_but_live_units_are_not_dead():
    layers = [_stats("fc1", "Linear", 0, 10, grad_zero=0.0), _stats("relu1", "ReLU", 1, zeros=0.95)]
    assert diagnose(_facts(layers)) == []


def _probed(depth, output_grad, activation_rms, parameters=4096):
    row = {"output_grad_norm": output_grad, "activation_mean": 0.0, "activation_std": activation_rms}
    return LayerRecord(name=f"fc{depth}", kind="Linear", depth=depth, parameters=parameters, weight_norm=1.0,
                      grad_norm=1.0, grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0, grad_zero_fraction=0.0,
                      grad_nonfinite=0, grad_to_weight=1.0, batch_rows=[row] * 3)


def _facts(layers, **facts) -> NetworkFacts:
    return NetworkFacts(layers=layers, roles={s.name: ROLES[s.kind] for s in layers}, **facts)


def _codes(layers, **facts):
    return {f["code"] for f in diagnose(_facts(layers, **facts))}


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
    facts = dict(weights=weights, structure=Structure(8, 0, 0, 8))
    grads = [10.0 ** (2.0 - 2.0 * d / 7) for d in range(8)]
    in_scale = [_probed(d, g, 1.0) for d, g in enumerate(grads)]
    growing = [_probed(d, g, 2.0 ** d) for d, g in enumerate(grads)]
    assert "poor_initialization" not in _codes(in_scale, **facts)
    assert "poor_initialization" in _codes(growing, **facts)


def _row(mean, std, output_grad_nonfinite=0):
    return {"numel": 64, "activation_mean": mean, "activation_std": std, "output_grad_norm": 1.0,
            "output_grad_nonfinite": output_grad_nonfinite}


def test_a_masked_infinity_that_reaches_no_gradient_is_not_a_finding():
    # An attention mask: -inf added to scores that a softmax turns into exact zeros; loss and gradients finite.
    scores = LayerRecord(name="mask", kind="Add", depth=1, parameters=0, weight_norm=0.0, grad_norm=0.0,
                         grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0, grad_zero_fraction=0.0,
                         grad_nonfinite=0, grad_to_weight=None, batch_rows=[_row(None, None)] * 3)
    layers = [_probed(0, 1.0, 1.0), scores, _probed(2, 1.0, 1.0)]
    roles = {"fc0": LayerRole(WEIGHT), "fc2": LayerRole(WEIGHT)}
    assert diagnose(NetworkFacts(layers=layers, roles=roles)) == []
    reaching = [_probed(0, 1.0, 1.0), replace(scores, batch_rows=[_row(None, None, 5)] * 3), _probed(2, 1.0, 1.0)]
    found = diagnose(NetworkFacts(layers=reaching, roles=roles))
    assert [f["code"] for f in found] == ["nonfinite_values"] and found[0]["evidence"]["first_layer"] == "mask"
    assert [f["code"] for f in diagnose(NetworkFacts(layers=layers, roles=roles, loss_finite=False))] == [
        "nonfinite_values"]


def _sized(depth, output_grad, entries, name=None, kind="Linear"):
    row = {"output_grad_norm": output_grad, "numel": entries, "activation_mean": 0.0, "activation_std": 1.0}
    return LayerRecord(name=name or f"fc{depth}", kind=kind, depth=depth, parameters=4096, weight_norm=1.0,
                      grad_norm=1.0, grad_mean_abs=0.0, grad_std=0.0, grad_max_abs=0.0, grad_zero_fraction=0.0,
                      grad_nonfinite=0, grad_to_weight=1.0, batch_rows=[row] * 3)


def test_tensor_size_alone_is_not_a_gradient_trend():
    # Each layer toward the input has 4x the entries (a resolution doubling): under fan-out init the per-entry
    # RMS stays level and the norm doubles per layer, 2.1 decades over 8 layers, which size alone explains.
    by_size = [_sized(d, 2.0 ** (7 - d), 4 ** (9 - d)) for d in range(9)]
    assert _codes(by_size) == set()
    # A real gain of 2 per layer on level sizes shows in both measures.
    by_gain = [_sized(d, 2.0 ** (7 - d), 4096) for d in range(9)]
    assert _codes(by_gain) == {"exploding_gradient"}


def test_the_output_layers_own_gradient_is_the_loss_source_not_a_point_of_the_trend():
    # Level through the stack, then the classifier's ten logits: their gradient is the loss's.
    layers = [_sized(d, 1.0, 4096) for d in range(8)] + [_sized(8, 1e-3, 10)]
    assert _codes(layers) == set()


def test_gradient_growth_in_a_fully_normalised_network_is_reported_not_warned():
    # conv -> BatchNorm pairs, then the classifier; the gradient grows 2 decades toward the input.
    layers, depth = [], 0
    for i in range(8):
        layers += [_sized(depth, 10.0 ** (2 - 0.25 * i), 4096, f"conv{i}"),
                   _sized(depth + 1, 10.0 ** (2 - 0.25 * i), 4096, f"bn{i}", "BatchNorm2d")]
        depth += 2
    layers.append(_sized(depth, 1.0, 4096, "fc"))
    roles = {**{s.name: LayerRole(WEIGHT) for s in layers}, **{f"bn{i}": LayerRole(NORMALIZATION) for i in range(8)}}
    found = diagnose(NetworkFacts(layers=layers, roles=roles))
    assert [(f["code"], f["severity"]) for f in found] == [("exploding_gradient", "info")]
    unnormalised = [s for s in layers if not s.name.startswith("bn")]
    assert {f["severity"] for f in diagnose(NetworkFacts(layers=unnormalised, roles=roles))} == {"warning"}


def _dead_layers(share):
    return [_stats("fc1", "Linear", 0, 10, grad_zero=share), _stats("relu1", "ReLU", 1, zeros=share),
            _stats("fc2", "Linear", 2, 10)]


def test_a_dead_share_past_the_threshold_warns_only_when_enough_samples_resolve_it():
    few = diagnose(_facts(_dead_layers(0.6), batch_size=8))  # 24 samples
    assert [(f["code"], f["severity"]) for f in few] == [("dead_relu", "info")]
    assert few[0]["evidence"]["samples"] == 24
    assert [f["severity"] for f in diagnose(_facts(_dead_layers(0.6), batch_size=32))] == ["warning"]
    assert [f["severity"] for f in diagnose(_facts(_dead_layers(1.0), batch_size=1))] == ["critical"]


def test_a_long_shortest_path_with_skips_elsewhere_is_not_a_plain_stack():
    # 24 weight layers on the shortest path, drifting 1.2 decades: plain only where nothing bypasses anything.
    layers = [_sized(d, 10.0 ** (1.2 - 0.05 * d), 4096) for d in range(25)] + [_sized(25, 1.0, 10)]
    assert _codes(layers, structure=Structure(26, 0, 0, 26)) == {"deep_plain_stack"}
    assert _codes(layers, structure=Structure(26, 0, 4, 24)) == set()


def test_growth_outside_the_normalised_layers_still_warns():
    # Four conv -> BatchNorm pairs stay level; then eight unnormalised layers grow the gradient 2 decades.
    layers, depth = [], 0
    for i in range(8):
        layers.append(_sized(depth, 10.0 ** (2 - 0.25 * i), 4096, f"fc{i}"))
        depth += 1
    for i in range(4):
        layers += [_sized(depth, 1.0, 4096, f"conv{i}"), _sized(depth + 1, 1.0, 4096, f"bn{i}", "BatchNorm2d")]
        depth += 2
    layers.append(_sized(depth, 1.0, 4096, "head"))
    roles = {**{s.name: LayerRole(WEIGHT) for s in layers}, **{f"bn{i}": LayerRole(NORMALIZATION) for i in range(4)}}
    found = diagnose(NetworkFacts(layers=layers, roles=roles))
    assert [(f["code"], f["severity"]) for f in found] == [("exploding_gradient", "warning")]
