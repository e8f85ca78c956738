"""Which layers a recommendation names, and the initialisation theory gives each activation.

A recommendation names the finding's layers (or a computed subset it states), never others: the weight
layers among them, or the weight layers feeding the activation layers among them.
"""

from __future__ import annotations

from typing import NamedTuple

from worker.diagnosis.common import Context, span
from worker.diagnosis.facts import NORMALIZATION, RECURRENT


class Init(NamedTuple):
    """An initialisation: its recommendation code, the call a PyTorch user makes, and why its gain is about 1."""

    code: str
    call: str
    theory: str


RELU_LIKE = ("relu", "leaky_relu", "gelu", "elu", "silu", "hardswish")
# Mean field (Poole et al. 2016, Schoenholz et al. 2017): a layer multiplies the gradient's mean square by
# sigma_w^2 E[phi'(h)^2], where sigma_w^2 = fan_in Var(w). Each entry is the init whose sigma_w^2 makes that
# about 1 for the activation; a sigmoid has none (SIGMOID_WHY; tests/engine/test_recommendations.py checks it).
INITS = {
    "relu": Init("reinit_he", "He/Kaiming normal (torch.nn.init.kaiming_normal_(w, nonlinearity='relu'))",
                 "variance 2/fan_in makes each layer's gradient gain 1 for ReLU (about 1 for its smooth relatives; "
                 "He et al. 2015)"),
    "tanh": Init("reinit_xavier", "Xavier/Glorot normal (torch.nn.init.xavier_normal_(w)) or orthogonal "
                 "(torch.nn.init.orthogonal_(w))",
                 "variance 1/fan_in puts tanh at the edge of chaos, where each layer's gradient gain is about 1 "
                 "(Schoenholz et al. 2017)"),
    "selu": Init("reinit_xavier", "LeCun normal (torch.nn.init.kaiming_normal_(w, nonlinearity='linear'))",
                 "variance 1/fan_in is the fixed point SELU's self-normalisation assumes (Klambauer et al. 2017)"),
    "recurrent": Init("reinit_orthogonal", "an orthogonal recurrent matrix (torch.nn.init.orthogonal_ on weight_hh)",
                      "all its singular values are 1, so the recurrence cannot grow the gradient over time steps "
                      "and shrinks it only through its activation's derivative (Saxe et al. 2014, Pascanu et al. "
                      "2013)"),
    "linear": Init("reinit_orthogonal", "a scaled orthogonal matrix of gain 1 (torch.nn.init.orthogonal_(w))",
                   "every singular value is 1, so each layer's gradient gain is exactly 1 (Saxe et al. 2014)"),
}
SIGMOID_WHY = (
    "Rescaling the weights cannot do this for a sigmoid, Xavier included: its derivative is at most 1/4, and mean "
    "field puts each layer's gradient gain sigma_w^2 E[sigmoid'(h)^2] below 1 at every weight scale that keeps its "
    "units out of saturation. Where a bounded activation is wanted, use tanh with Xavier normal or orthogonal "
    "weights (torch.nn.init.xavier_normal_ / orthogonal_), which keeps the gain about 1 (the edge of chaos).")

def family(ctx: Context, name: str) -> str:
    """Weight layer `name`'s init family: recurrent, or its activation's: relu, tanh, selu, linear, or sigmoid
    (which no init rescues)."""
    if ctx.facts.role(name).role == RECURRENT:
        return "recurrent"
    activation = ctx.activation_after(name)
    if activation in RELU_LIKE:
        return "relu"
    return activation if activation in ("tanh", "selu", "sigmoid") else "linear"


def classifier(ctx: Context) -> str | None:
    """The output classifier: the last weight layer (normalization aside), the one feeding the loss."""
    owning = [s.name for s in ctx.weights if ctx.facts.role(s.name).role != NORMALIZATION]
    return owning[-1] if owning else None


def weights_of(ctx: Context, names: list[str]) -> list[str]:
    """The weight layers among names, and those feeding the activation layers among them, input side first."""
    order = [s.name for s in ctx.weights if ctx.facts.role(s.name).role != NORMALIZATION]
    chosen = {name for name in names if name in order}
    chosen |= {feeding for name in names if name not in order and (feeding := _feeding(ctx, name))}
    return [name for name in order if name in chosen]


def _feeding(ctx: Context, name: str) -> str | None:
    """The nearest weight layer before layer `name`, normalization layers passed over."""
    before = None
    for s in ctx.layers:
        if s.name == name:
            return before
        if s.parameters and ctx.facts.role(s.name).role != NORMALIZATION:
            before = s.name
    return None


def hidden(ctx: Context, names: list[str]) -> list[str]:
    """The weight layers among names (or feeding them) that are not the classifier."""
    return [name for name in weights_of(ctx, names) if name != classifier(ctx)]


def normalizable(ctx: Context, names: list[str]) -> list[str]:
    """Where normalization goes: after hidden weight layers that an activation follows."""
    return [name for name in hidden(ctx, names) if ctx.activation_after(name) != "linear"]


def squashed(ctx: Context, names: list[str]) -> list[str]:
    """The hidden weight layers among names that feed a sigmoid or tanh."""
    return [name for name in hidden(ctx, names) if ctx.activation_after(name) in ("sigmoid", "tanh")]


def named(ctx: Context, names: list[str]) -> str:
    """'layers a to b' when names are consecutive layers of one role, else the range with the ones it skips."""
    same = [s.name for s in ctx.layers if ctx.facts.role(s.name).role in {ctx.facts.role(n).role for n in names}]
    if len(names) < 3 or not set(names) <= set(same):
        return span(names) if len(names) != 2 else f"layers '{names[0]}' and '{names[1]}'"
    run = same[same.index(names[0]):same.index(names[-1]) + 1]
    skipped = [name for name in run if name not in names]
    if not skipped:
        return span(names)
    if len(skipped) < len(names):
        return f"{span(names)} except {_quoted(skipped)}"
    return f"layers {_quoted(names)}"


def _quoted(names: list[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
