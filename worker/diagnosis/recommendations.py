"""Recommendations: for each finding, the concrete change that removes its cause first, naming the layers."""

from __future__ import annotations

import math
import statistics

from worker.diagnosis import remedy_layers as layers
from worker.diagnosis.common import Context, span

RECOMMENDATION_CODES = (
    "use_relu", "use_leaky_relu", "add_batch_norm", "add_layer_norm", "add_skip_connections", "reinit_he",
    "reinit_xavier", "reinit_orthogonal", "clip_gradients", "use_lstm_or_gru", "reduce_depth", "reset_biases",
    "scale_residual_branches", "guard_nonfinite",
)
# clip_grad_norm_ suggestion: this many times the median per-layer gradient norm seen in the probe.
CLIP_FACTOR = 5.0


def recommend(finding: dict, ctx: Context, findings: list[dict]) -> list[dict]:
    """The finding's recommendations, the fix of its root cause first, without repeated codes."""
    advice = _ADVISORS[finding["code"]](finding, ctx, {f["code"]: f for f in findings})
    seen, unique = set(), []
    for item in advice:
        if item is not None and item["code"] not in seen:
            seen.add(item["code"])
            unique.append(item)
    return unique


def _rec(code: str, text: str, layers: list[str] | None = None, **edit) -> dict:
    """A recommendation: its code, its text, the layers it changes (none: the whole network or its training),
    and what else its edit needs (worker/remedies applies and measures it)."""
    return {"code": code, "text": text, "layers": list(layers or []), **({"edit": edit} if edit else {})}


def _within(names: list[str], finding: dict, ctx: Context) -> list[str]:
    """The weight layers of names (or feeding them) that the finding also names: a cause's advice under a symptom."""
    scope = set(layers.weights_of(ctx, finding["layers"]))
    return [name for name in layers.weights_of(ctx, names) if name in scope]


def _reinit(ctx: Context, names: list[str], why: str = "") -> dict | None:
    """Re-initialise the weight layers of names as theory gives for the activation after them; for layers feeding
    sigmoids, whose gain no weight scale restores, the activation swap instead."""
    weights = layers.weights_of(ctx, names)
    groups: dict[str, list[str]] = {}
    for name in weights:
        groups.setdefault(layers.family(ctx, name), []).append(name)
    hidden = [layers.family(ctx, name) for name in weights if name != layers.classifier(ctx)]
    main = statistics.mode(hidden) if hidden else next(iter(groups), None)
    if main is None:
        return None
    if main == "sigmoid":
        return _use_relu(ctx, groups["sigmoid"], "")
    code, call, theory = layers.INITS[main]
    feeding = [name for name in names if name not in weights]
    where = f" (the weight layers feeding {layers.named(ctx, feeding)})" if feeding else ""
    text = f"Re-initialise {layers.named(ctx, groups[main])}{where} with {call}: {why}{theory}"
    inits = {name: main for name in groups[main]}
    for other, others in groups.items():
        if other not in (main, "sigmoid"):
            after = "which no activation follows" if other == "linear" else f"followed by {other}"
            text += f"; and {layers.named(ctx, others)}, {after}, with {layers.INITS[other].call}"
            inits.update({name: other for name in others})
    if "sigmoid" in groups:
        text += (f"; not {layers.named(ctx, groups['sigmoid'])}, which feed sigmoids: no weight scale restores "
                 "their gain, replace the sigmoid")
    edited = [name for name in weights if name in inits]
    return _rec(code, text + ".", edited, inits={name: inits[name] for name in edited})


def _use_relu(ctx: Context, weights: list[str], measured: str) -> dict | None:
    """Swap the sigmoid/tanh after the weight layers for ReLU, He-initialised, saying why rescaling would not do."""
    if not weights:
        return None
    kinds = sorted({ctx.activation_after(name) for name in weights})
    text = (f"Replace the {'/'.join(kinds)} after {layers.named(ctx, weights)} with ReLU and re-initialise those "
            f"layers with {layers.INITS['relu'].call}: ReLU passes the gradient unchanged wherever it is active, and "
            f"{layers.INITS['relu'].theory}{measured}.")
    return _rec("use_relu", text + (" " + layers.SIGMOID_WHY if "sigmoid" in kinds else ""), weights)


def _poor_init(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    return [_init_cause(finding, ctx, finding["layers"]), _normalize(ctx, finding["layers"])]


def _init_cause(finding: dict, ctx: Context, names: list[str]) -> dict | None:
    """The re-initialisation a poor_initialization finding asks for, on names."""
    if finding["severity"] == "critical":
        return _reinit(ctx, names, "random weights break the symmetry between units (keep constant values only for "
                                   "biases); ")
    return _reinit(ctx, names)


def _dead(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    negative = _negative_bias_layers(ctx, finding["layers"])
    advice = []
    if negative:
        advice.append(_rec("reset_biases", (
            f"Biases of {layers.named(ctx, negative)} (the weight layers feeding these ReLUs) are strongly negative "
            "and keep the ReLUs below zero: reset them to zero (torch.nn.init.zeros_) or a small positive value "
            "such as 0.01."), negative))
    advice.append(_rec("use_leaky_relu", (
        f"Replace the ReLUs ({layers.named(ctx, finding['layers'])}) with LeakyReLU (negative_slope=0.01) so a unit "
        "that is off still passes gradient and can recover."), finding["layers"]))
    narrow = [s for s in ctx.weights if s.batch_rows and s.batch_rows[0]["numel"] // ctx.facts.batch_size <= 8]
    if narrow and len(ctx.weights) >= 10:
        width = narrow[0].batch_rows[0]["numel"] // ctx.facts.batch_size
        advice.append(_rec("reduce_depth", (
            f"{len(ctx.weights)} weight layers of width as small as {width}"
            ": a deep narrow ReLU stack is born dead with high probability (Lu et al. 2019); use fewer, wider layers."),
            layers.weights_of(ctx, [s.name for s in ctx.weights])))
    advice.append(_reinit(ctx, finding["layers"]))
    return advice


def _negative_bias_layers(ctx: Context, relus: list[str]) -> list[str]:
    names = []
    for relu in relus:
        feeding = ctx.weight_before(relu)
        facts = ctx.facts.weights.get(feeding.name) if feeding else None
        if facts and facts.bias_mean is not None and facts.bias_mean < -facts.rms * facts.fan_in ** 0.5:
            names.append(feeding.name)
    return names


def _saturated(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    return _saturation_advice(finding, ctx, by_code, layers.weights_of(ctx, finding["layers"]))


def _saturation_advice(finding: dict, ctx: Context, by_code: dict, weights: list[str]) -> list[dict]:
    """For the saturated units fed by weights: smaller weights if they are too large, else the activation swap."""
    kinds = "/".join(finding["evidence"]["kinds"])
    # Every squashing activation goes, not only the saturated ones: swapping those alone hands their inputs'
    # scale on to the sigmoids after them, which then saturate more (measured: glorot_sigmoid_large, 0.26 -> 0.34).
    every = layers.squashed(ctx, [s.name for s in ctx.weights])
    relu = _use_relu(ctx, every, f"; the {kinds} outputs sit in their flat region, where no gradient passes")
    init = by_code.get("poor_initialization")
    # The cause's layers, all of them, where it names the saturated ones: rescaling only those moves the problem on.
    scale = layers.weights_of(ctx, init["layers"]) if init and set(weights) & set(init["layers"]) else []
    if not scale:
        return [relu, _normalize(ctx, weights)]
    return [_reinit(ctx, scale, f"smaller weights bring the pre-activations back to where the {kinds} derivative "
                                "is large; "), relu]


def _vanishing(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    advice = []
    if "poor_initialization" in by_code:
        advice.append(_init_cause_of(by_code["poor_initialization"], finding, ctx))
    if "saturated_activation" in by_code:
        saturated = by_code["saturated_activation"]
        advice += _saturation_advice(saturated, ctx, by_code, _within(saturated["layers"], finding, ctx))
    slope = abs(finding["evidence"].get("slope_decades_per_layer", 0))
    advice += [_use_relu(ctx, layers.squashed(ctx, finding["layers"]),
                         f"; here the gradient falls {slope:.2f} decades per weight layer"),
               _normalize(ctx, finding["layers"]), _skip(ctx, finding["layers"]), _reinit(ctx, finding["layers"])]
    return advice


def _init_cause_of(cause: dict, finding: dict, ctx: Context) -> dict | None:
    """The cause's re-initialisation under a trend it explains, over every layer the cause names: re-initialising
    only those where the trend is past its threshold leaves the rest driving it (measured: a 12-layer chaotic
    tanh stack stays at 2.1 decades with half its layers re-initialised)."""
    return _init_cause(cause, ctx, cause["layers"]) if _within(cause["layers"], finding, ctx) else None


def _exploding(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    if "change_decades_by_layer" in finding["evidence"]:
        return _exploding_through_time(finding, ctx)
    advice = []
    if "poor_initialization" in by_code:
        advice.append(_init_cause_of(by_code["poor_initialization"], finding, ctx))
    if "missing_normalization" in by_code:
        advice += [_scale_branches(ctx), _normalize(ctx, finding["layers"])]
    advice = [a for a in advice if a]
    advice.append(_clip(ctx))
    if len(advice) == 1:
        advice.append(_reinit(ctx, finding["layers"]))
    return advice


def _gradient_norms(ctx: Context) -> list[float]:
    return [s.grad_norm for s in ctx.weights if s.grad_norm > 0 and math.isfinite(s.grad_norm)] or [1.0]


def _clip_norm(ctx: Context) -> float:
    """CLIP_FACTOR times the median per-layer gradient norm, to two significant digits."""
    return float(f"{CLIP_FACTOR * statistics.median(_gradient_norms(ctx)):.2g}")


def _clip(ctx: Context) -> dict:
    median = statistics.median(_gradient_norms(ctx))
    max_norm = _clip_norm(ctx)
    return _rec("clip_gradients", (
        f"Clip the total gradient norm with torch.nn.utils.clip_grad_norm_(parameters, max_norm={max_norm:g}): "
        f"{CLIP_FACTOR:g}x the median per-layer gradient norm measured here ({median:.3g}) under this loss."),
        max_norm=max_norm)


def _missing_norm(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    return [_scale_branches(ctx), _normalize(ctx, finding["layers"])]


def _scale_branches(ctx: Context) -> dict | None:
    if not (ctx.facts.structure and ctx.facts.structure.skips):
        return None
    return _rec("scale_residual_branches", (
        f"The {ctx.facts.structure.skips} residual additions each add a branch of full scale: zero-initialise "
        "the last layer of every residual branch and scale the others by L^(-1/(2m-2)) (Fixup, Zhang et al. "
        "2019), or add normalization inside each branch."), skips=ctx.facts.structure.skips)


def _normalize(ctx: Context, names: list[str]) -> dict | None:
    """BatchNorm after the named hidden weight layers an activation follows; never after the classifier."""
    if ctx.facts.structure is not None and ctx.facts.structure.normalizations:
        return None
    if any(ctx.op_counts.get(op) for op in ("batch_norm", "layer_norm", "group_norm", "instance_norm")):
        return None
    where = layers.normalizable(ctx, names)
    if not where:
        return None
    return _rec("add_batch_norm", (
        f"No normalization layer was found: add BatchNorm (LayerNorm for sequences) after {layers.named(ctx, where)} "
        f"({len(where)} weight layer{'s' if len(where) > 1 else ''}), each before its activation, so every layer's input stays at unit scale; "
        "not after the output classifier, whose outputs are the logits."), where)


def _skip(ctx: Context, names: list[str]) -> dict | None:
    if ctx.facts.structure is not None and ctx.facts.structure.skips:
        return None
    return _rec("add_skip_connections", (
        f"Add residual connections (x + f(x)) around blocks of {layers.named(ctx, names)} so the gradient can reach "
        "the input side without crossing every layer."), layers.hidden(ctx, names))


def _deep_plain(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    path = finding["evidence"]["shortest_gradient_path_weight_layers"]
    return [
        _skip(ctx, finding["layers"]) or _rec("add_skip_connections", "Add residual connections."),
        _rec("reduce_depth", f"Or use fewer layers: the gradient crosses {path} weight layers in a row.",
             layers.weights_of(ctx, [s.name for s in ctx.weights])),
    ]


def _exploding_through_time(finding: dict, ctx: Context) -> list[dict]:
    """A plain recurrence whose gradient grows over time steps: clip it (Pascanu et al. 2013), and remove the
    cause, a recurrent matrix whose gain is above 1."""
    return [
        _clip(ctx),
        _rec("reinit_orthogonal", (
            f"Initialise the recurrent matrix of {span(finding['layers'])} orthogonal (torch.nn.init.orthogonal_ on "
            "weight_hh): all its singular values are 1, so with tanh's derivative at most 1 the gradient cannot grow "
            "over time steps (Saxe et al. 2014, Pascanu et al. 2013)."),
            finding["layers"], inits={name: "recurrent" for name in finding["layers"]}),
        _rec("use_lstm_or_gru", (
            f"Or replace the plain recurrence {span(finding['layers'])} with an LSTM or GRU, whose gates bound "
            "what each step passes on."), finding["layers"]),
    ]


def _recurrent(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    return [
        _rec("use_lstm_or_gru", (
            f"Replace the plain recurrence {span(finding['layers'])} with an LSTM or GRU, whose gated cell state "
            "carries the gradient across many time steps."), finding["layers"]),
        _rec("reinit_orthogonal", "Or initialise the recurrent matrix orthogonal (torch.nn.init.orthogonal_).",
             finding["layers"], inits={name: "recurrent" for name in finding["layers"]}),
    ]


def _nonfinite(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    advice = []
    if ctx.weight_nonfinite:
        advice.append(_replace_broken(ctx, sorted(ctx.weight_nonfinite)))
    advice.append(_rec("guard_nonfinite", (
        f"Guard the operations from layer '{finding['evidence']['first_layer']}' on that can turn finite inputs into "
        "NaN/Inf: clamp what goes into log to at least 1e-12 (torch.log(x.clamp_min(1e-12))), into sqrt to at "
        "least 0, into exp to at most 80, and keep divisors away from zero (x / (d + 1e-12 * d.sign()) or a "
        "clamped d).")))
    advice.append(_rec("clip_gradients", (
        f"Guard the operation after layer '{finding['evidence']['first_layer']}' that produces NaN/Inf (log or "
        "sqrt of non-positive values, division by zero, exp overflow: clamp or add an epsilon), and clip "
        "gradients with torch.nn.utils.clip_grad_norm_ so one bad step cannot blow the weights up."),
        max_norm=_clip_norm(ctx)))
    return advice


def _replace_broken(ctx: Context, names: list[str]) -> dict:
    """New weights for layers holding NaN/Inf, at the scale theory gives their activation."""
    main = statistics.mode([layers.family(ctx, name) for name in names])
    # A sigmoid has no gain-restoring scale; Xavier's at least keeps its units out of saturation.
    code, call, _ = layers.INITS["tanh" if main == "sigmoid" else main]
    return _rec(code, (
        f"Weights of {names} already hold NaN/Inf: re-initialise them with {call}, or restore a checkpoint from "
        "before training diverged."), names, inits={name: "tanh" if main == "sigmoid" else main for name in names})


_ADVISORS = {
    "nonfinite_values": _nonfinite, "poor_initialization": _poor_init, "dead_relu": _dead,
    "saturated_activation": _saturated, "recurrent_long_range": _recurrent, "vanishing_gradient": _vanishing,
    "missing_normalization": _missing_norm, "exploding_gradient": _exploding, "deep_plain_stack": _deep_plain,
}
