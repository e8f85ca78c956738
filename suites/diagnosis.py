"""The labelled development suite: each case a network from the literature, its expected finding codes, the
fixes the literature gives (any one of them is a right first recommendation), and its citation.

`cases(sweep="full")` is the whole sweep over depth, width and seed (bench/score_diagnosis.py);
`cases(sweep="fast")` one representative of each configuration (tests/engine/test_labelled_suite.py).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gradaudit.options import AuditOptions
from suites import networks as n
from worker.diagnosis.flow import WARNING_DECADES

GLOROT = "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks"
SAXE = "Saxe, McClelland & Ganguli 2014, Exact solutions to the nonlinear dynamics of learning in deep linear nets"
SCHOENHOLZ = "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep information propagation"
HE2015 = "He, Zhang, Ren & Sun 2015, Delving deep into rectifiers"
HE2016 = "He, Zhang, Ren & Sun 2016, Deep residual learning for image recognition"
ZHANG = "Zhang, Dauphin & Ma 2019, Fixup initialization: residual learning without normalization"
PASCANU = "Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent neural networks"
LU = "Lu, Shin, Su & Karniadakis 2019, Dying ReLU and initialization: theory and numerical examples"
BIAS = "Strongly negative biases keep ReLU pre-activations below zero (Lu et al. 2019, section 2)"
SYMMETRY = "Constant or zero initialisation leaves units symmetric (Goodfellow, Bengio & Courville 2016, 8.4)"
NONFINITE = "IEEE 754 overflow and invalid operations: exp above ~88.7 is inf in float32, log(x < 0) is NaN"
HEALTHY = "Healthy control"
DEEP_PLAIN = 20  # plain layers: He et al. 2016 see plain nets degrade from 20 to 56


@dataclass(frozen=True)
class Case:
    """One labelled network: how to build it, what its input looks like, what a right diagnosis says."""

    name: str
    family: str
    citation: str
    build: Callable[[], nn.Module]
    shape: list[int]
    expected: frozenset[str]
    fixes: frozenset[str]  # recommendation codes, any of which is the literature's first fix; empty if healthy

    def network(self) -> nn.Module:
        """The network, built reproducibly."""
        torch.manual_seed(_seed(self.name))
        return self.build()


def _seed(name: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 100_000


def _case(name, family, citation, build, shape, expected=(), fixes=()) -> Case:
    return Case(name, family, citation, build, shape, frozenset(expected), frozenset(fixes))


def _deep(depth: int) -> tuple[str, ...]:
    return ("deep_plain_stack",) if depth >= DEEP_PLAIN else ()


def glorot(depth: int, width: int, seed: int) -> list[Case]:
    """Deep sigmoid MLPs: default init (gradients vanish); N(0, 1) weights saturate the units, while their size
    offsets the small derivative only in part: their gradient vanishes where mean field says it loses
    WARNING_DECADES over the hidden stack (saturated_sigmoid_decay)."""
    tag = f"d{depth}w{width}s{seed}"
    vanishing = ("vanishing_gradient",) if saturated_sigmoid_decay(width, depth) >= WARNING_DECADES else ()
    return [
        _case(f"glorot_sigmoid_{tag}", "glorot2010", GLOROT, lambda: n.mlp(depth, width, "sigmoid"), [8, width],
              ("vanishing_gradient",), ("use_relu",)),
        _case(f"glorot_sigmoid_large_{tag}", "glorot2010", GLOROT,
              lambda: n.mlp(depth, width, "sigmoid", n.gaussian(width)), [8, width],
              ("saturated_activation", "poor_initialization") + vanishing, ("use_relu", "reinit_xavier")),
    ]


def saturated_sigmoid_decay(width: int, depth: int) -> float:
    """Decades the gradient loses from the last to the first hidden layer of a sigmoid MLP with N(0, 1) weights.

    Mean field (Schoenholz et al. 2017): each layer multiplies the gradient's mean square by chi = width *
    E[sigmoid'(h)^2], h ~ N(0, q), q the fixed point of q = width * E[sigmoid(h)^2] (biases of variance
    1 / (3 width) left out). chi is 0.57 at width 32 (0.12 decades per layer: 1.6 decades over 14 layers, 1.1 over
    10), 0.80 at width 64 (0.05 per layer) and 1.1 at width 128. The audits agree: at width 32 the hidden stack
    loses 1.8 and 2.2 decades over 14 layers (fit r2 0.99), 0.9 and 1.4 over 10; at width 64, 0.75 and 0.8 over 14.
    """
    return -0.5 * math.log10(_sigmoid_chi(width)) * (depth - 1)


@functools.cache
def _sigmoid_chi(width: int) -> float:
    z = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64)
    density = torch.exp(-z ** 2 / 2)
    density = density / density.sum()
    q = 1.0
    for _ in range(100):
        q = width * float((torch.sigmoid(math.sqrt(q) * z) ** 2 * density).sum())
    derivative = torch.sigmoid(math.sqrt(q) * z) * (1 - torch.sigmoid(math.sqrt(q) * z))
    return width * float((derivative ** 2 * density).sum())


def saxe(depth: int, width: int, seed: int) -> list[Case]:
    """Deep linear networks: scaled orthogonal weights with gain below 1, above 1, and exactly 1."""
    tag = f"d{depth}w{width}s{seed}"
    fixes = ("reinit_orthogonal", "reinit_xavier")
    build = lambda gain: lambda: n.mlp(depth, width, "linear", n.scaled_orthogonal(gain))  # noqa: E731
    return [
        _case(f"saxe_below_{tag}", "saxe2014", SAXE, build(0.5), [8, width],
              ("vanishing_gradient", "poor_initialization"), fixes),
        _case(f"saxe_above_{tag}", "saxe2014", SAXE, build(2.0), [8, width],
              ("exploding_gradient", "poor_initialization"), fixes),
        _case(f"saxe_orthogonal_{tag}", "saxe2014", SAXE, build(1.0), [8, width]),
    ]


def schoenholz(depth: int, width: int, seed: int) -> list[Case]:
    """Deep tanh MLPs with sigma_w^2 in the ordered phase, at criticality, and deep in the chaotic phase."""
    tag = f"d{depth}w{width}s{seed}"
    fixes = ("reinit_xavier", "reinit_orthogonal")
    build = lambda s2: lambda: n.mlp(depth, width, "tanh", n.gaussian(s2), bias=0.0)  # noqa: E731
    return [
        _case(f"schoenholz_ordered_{tag}", "schoenholz2017", SCHOENHOLZ, build(0.25), [8, width],
              ("vanishing_gradient", "poor_initialization"), fixes),
        _case(f"schoenholz_critical_{tag}", "schoenholz2017", SCHOENHOLZ, build(1.0), [8, width]),
        _case(f"schoenholz_chaotic_{tag}", "schoenholz2017", SCHOENHOLZ, build(16.0), [8, width],
              ("exploding_gradient", "saturated_activation", "poor_initialization"), fixes),
    ]


def he2015(depth: int, width: int, seed: int) -> list[Case]:
    """Deep plain ReLU CNNs: Xavier init halves the signal's variance per layer, He init keeps it (He et al.
    train 30 such layers with He init)."""
    tag = f"d{depth}c{width}s{seed}"
    return [
        _case(f"he2015_xavier_{tag}", "he2015", HE2015, lambda: n.plain_cnn(depth, width, "xavier"), [4, 3, 8, 8],
              ("vanishing_gradient", "poor_initialization"), ("reinit_he",)),
        _case(f"he2015_he_{tag}", "he2015", HE2015, lambda: n.plain_cnn(depth, width, "he"), [4, 3, 8, 8]),
    ]


def he2016(depth: int, width: int, seed: int) -> list[Case]:
    """Plain against residual CNNs, both with BatchNorm (running statistics calibrated, or untrained); from about
    20 layers the plain one's gradient explodes toward the input (Yang et al. 2019, a mean field theory of batch
    norm)."""
    tag = f"d{depth}c{width}s{seed}"
    shape = [4, 3, 8, 8]
    plain = lambda: n.calibrate_batch_norm(n.plain_cnn(depth, width, "he", batch_norm=True), shape, seed)  # noqa
    residual = lambda: n.calibrate_batch_norm(n.ResidualCNN(depth // 2, width, True), shape, seed)  # noqa: E731
    return [
        _case(f"he2016_plain_{tag}", "he2016", HE2016, plain, shape, _deep(depth),
              ("add_skip_connections",) if depth >= DEEP_PLAIN else ()),
        _case(f"he2016_residual_{tag}", "he2016", HE2016, residual, shape),
        # The same networks untrained, their BatchNorm at initial statistics (an identity in eval mode): probed as
        # training computes them, with batch statistics, they get the same labels. The legacy ONNX export folds
        # such BatchNorm into the convolutions, where the audit restores it (worker/engine/onnx/folded.py).
        _case(f"he2016_plain_fresh_bn_{tag}", "he2016", HE2016,
              lambda: n.plain_cnn(depth, width, "he", batch_norm=True).eval(), shape, _deep(depth),
              ("add_skip_connections",) if depth >= DEEP_PLAIN else ()),
        _case(f"he2016_residual_fresh_bn_{tag}", "he2016", HE2016,
              lambda: n.ResidualCNN(depth // 2, width, True).eval(), shape),
    ]


def zhang(blocks: int, width: int, seed: int) -> list[Case]:
    """Residual CNNs without normalisation or branch scaling: the residual stream's variance doubles per block."""
    return [_case(f"zhang_unnormalised_b{blocks}c{width}s{seed}", "zhang2019", ZHANG,
                  lambda: n.ResidualCNN(blocks, width, False).eval(), [4, 3, 8, 8],
                  ("exploding_gradient", "missing_normalization"), ("scale_residual_branches", "add_batch_norm"))]


def pascanu(length: int, width: int, seed: int) -> list[Case]:
    """Vanilla tanh RNNs with the recurrent matrix's spectral radius below and above 1."""
    tag = f"t{length}h{width}s{seed}"
    build = lambda radius: lambda: n.Recurrent("rnn", 8, width, radius).eval()  # noqa: E731
    return [
        _case(f"pascanu_contracting_{tag}", "pascanu2013", PASCANU, build(0.6), [8, length, 8],
              ("recurrent_long_range",), ("use_lstm_or_gru",)),
        _case(f"pascanu_expanding_{tag}", "pascanu2013", PASCANU, build(3.0), [8, length, 8],
              ("exploding_gradient",), ("clip_gradients",)),
    ]


def lu(depth: int, width: int, seed: int) -> list[Case]:
    """Deep narrow ReLU MLPs, born dead with high probability; the label follows a direct check of the network."""
    name = f"lu_narrow_d{depth}w{width}s{seed}"
    build = lambda: n.mlp(depth, width, "relu", bias=0.0, in_features=16)  # noqa: E731
    torch.manual_seed(_seed(name))
    dead = born_dead(build(), 16)
    return [_case(name, "lu2019", LU, build, [8, 16], ("dead_relu",) if dead else (),
                  ("use_leaky_relu",) if dead else ())]


def born_dead(network: nn.Sequential, features: int) -> bool:
    """Whether some ReLU layer outputs zero for every one of 4096 standard normal inputs."""
    x = torch.randn(4096, features, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for layer in network:
            x = layer(x)
            if isinstance(layer, nn.ReLU) and not x.any():
                return True
    return False


def negative_bias(depth: int, width: int, seed: int) -> list[Case]:
    """He-initialised ReLU MLPs whose biases sit several pre-activation standard deviations below zero."""
    tag = f"d{depth}w{width}s{seed}"
    init = lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")  # noqa: E731
    return [_case(f"negative_bias_{bias:g}_{tag}", "negative_bias", BIAS,
                  lambda bias=bias: n.mlp(depth, width, "relu", init, bias=bias), [8, width],
                  ("dead_relu",), ("reset_biases",)) for bias in (-3.0, -6.0)]


def symmetric(depth: int, width: int, seed: int) -> list[Case]:
    """ReLU and tanh MLPs with every weight zero, or every weight the same constant."""
    tag = f"d{depth}w{width}s{seed}"
    cases = []
    for activation, fix in (("relu", "reinit_he"), ("tanh", "reinit_xavier")):
        for label, value in (("zero", 0.0), ("constant", 0.5 / width)):
            cases.append(_case(f"symmetric_{label}_{activation}_{tag}", "constant_init", SYMMETRY,
                               lambda a=activation, v=value: n.mlp(depth, width, a, n.constant(v)), [8, width],
                               ("poor_initialization",), (fix,)))
    return cases


def nonfinite(depth: int, width: int, seed: int) -> list[Case]:
    """An unguarded exp that overflows float32 and a log of values that are often negative. The fix is to guard
    the op (clamp what goes into it): guard_nonfinite, which carries the advice clip_gradients's text gave before
    it had a code (and an edit) of its own; clipping gradients cannot make a NaN forward pass finite."""
    tag = f"w{width}s{seed}"
    return [_case(f"nonfinite_{op}_{tag}", "nonfinite", NONFINITE, lambda op=op, k=scale: n.Unguarded(op, width, k),
                  [8, width], ("nonfinite_values",), ("guard_nonfinite",))
            for op, scale in (("exp", 100.0), ("log", 1.0))]


# How attention masks are written: -inf (PyTorch's own masks) and finfo.min (GPT-2 and most of transformers).
_MASK_FILLS = (float("-inf"), torch.finfo(torch.float32).min)


def healthy(depth: int, width: int, seed: int) -> list[Case]:
    """Controls no finding should flag: residual CNN with BN, a transformer encoder, a causal decoder whose
    attention mask is -inf or finfo.min, an LSTM, a He ReLU MLP."""
    tag = f"d{depth}w{width}s{seed}"
    shape = [4, 3, 8, 8]
    return [
        _case(f"healthy_resnet_bn_{tag}", "healthy", HEALTHY,
              lambda: n.calibrate_batch_norm(n.ResidualCNN(depth // 2, 16, True), shape, seed), shape),
        _case(f"healthy_transformer_{tag}", "healthy", HEALTHY,
              lambda: n.TransformerClassifier(max(2, depth // 4), width).eval(), [4, 12, width]),
        _case(f"healthy_lstm_{tag}", "healthy", HEALTHY, lambda: n.Recurrent("lstm", 8, width).eval(), [8, 30, 8]),
        _case(f"healthy_causal_decoder_{tag}", "healthy", HEALTHY,
              lambda: n.CausalDecoder(max(2, depth // 4), width, 12, _MASK_FILLS[seed]).eval(), [4, 12, width]),
        _case(f"healthy_relu_mlp_{tag}", "healthy", HEALTHY,
              lambda: n.mlp(depth // 2, width, "relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
                            bias=0.0), [8, width]),
    ]


_FAMILIES = {  # family: (builder, full sweep of (depth or length or blocks, width, seed))
    glorot: [(d, w, s) for d in (6, 10, 14) for w in (32, 64) for s in (0, 1)],
    saxe: [(d, w, s) for d in (8, 16) for w in (32, 64) for s in (0, 1)],
    schoenholz: [(d, w, s) for d in (12, 24) for w in (64, 128) for s in (0, 1)],
    he2015: [(d, c, s) for d in (16, 24, 32) for c in (16, 32) for s in (0,)],
    he2016: [(d, c, s) for d in (12, 24, 32) for c in (8, 16) for s in (0,)],
    zhang: [(b, c, s) for b in (12, 20) for c in (8, 16) for s in (0, 1)],
    pascanu: [(t, h, s) for t in (30, 60) for h in (32, 64) for s in (0, 1)],
    lu: [(d, w, s) for d in (30, 50) for w in (2, 3) for s in range(3)],
    negative_bias: [(d, w, s) for d in (4, 8) for w in (32, 64) for s in (0,)],
    symmetric: [(d, w, s) for d in (4, 8) for w in (16, 32) for s in (0,)],
    nonfinite: [(1, w, s) for w in (16, 64) for s in (0, 1)],
    healthy: [(d, w, s) for d in (8, 16) for w in (32, 64) for s in (0, 1)],
}


def cases(sweep: str = "full") -> list[Case]:
    """Every case of the sweep ("full"), or the first configuration of each family ("fast")."""
    found = []
    for family, grid in _FAMILIES.items():
        for depth, width, seed in (grid if sweep == "full" else grid[:1]):
            found += family(depth, width, seed)
    return found


EXPORT_ROUTES = ("onnx", "dynamo", "torchscript", "pt2")


def export(case: Case, network_format: str, folder: Path) -> tuple[Path, AuditOptions]:
    """The case's network saved by one route, and the options to audit it: "onnx" (the legacy exporter,
    opset 17), "dynamo" (torch.onnx.export's default, weights in NAME.onnx.data beside it), "torchscript" (a
    trace) or "pt2" (torch.export, whose program declares its own input shapes)."""
    network, example = case.network(), torch.randn(case.shape, generator=torch.Generator().manual_seed(0))
    torch.backends.mha.set_fastpath_enabled(False)  # the fused eval path neither traces nor exports
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if network_format == "onnx":
            path = folder / f"{case.name}.onnx"
            torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
            return path, AuditOptions(input_shapes={"x": case.shape})
        if network_format == "dynamo":
            path = folder / f"{case.name}.onnx"
            torch.onnx.export(network, (example,), str(path), input_names=["x"])
            return path, AuditOptions(input_shapes={"x": case.shape})
        if network_format == "pt2":
            path = folder / f"{case.name}.pt2"
            torch.export.save(torch.export.export(network, (example,)), str(path))
            return path, AuditOptions()
        path = folder / f"{case.name}.pt"
        torch.jit.save(torch.jit.trace(network, example, check_trace=False), str(path))
    return path, AuditOptions(input_shapes={_input_name(path): case.shape})


def _input_name(path: Path) -> str:
    module = torch.jit.load(str(path))
    return module.forward.schema.arguments[1].name
