"""Recommendations: for each finding, the concrete change that removes its cause first, naming the layers."""

from __future__ import annotations

import statistics

from worker.diagnosis.common import Context, span

RECOMMENDATION_CODES = (
    "use_relu", "use_leaky_relu", "add_batch_norm", "add_layer_norm", "add_skip_connections", "reinit_he",
    "reinit_xavier", "reinit_orthogonal", "clip_gradients", "use_lstm_or_gru", "reduce_depth", "reset_biases",
    "scale_residual_branches",
)
# clip_grad_norm_ suggestion: this many times the median per-layer gradient norm seen in the probe.
CLIP_FACTOR = 5.0
_INIT_CALLS = {
    "reinit_he": "He/Kaiming normal (torch.nn.init.kaiming_normal_(w, nonlinearity='relu'))",
    "reinit_xavier": "Xavier/Glorot (torch.nn.init.xavier_normal_(w)), or orthogonal",
    "reinit_orthogonal": "a scaled orthogonal matrix of gain 1 (torch.nn.init.orthogonal_(w))",
}


def recommend(finding: dict, ctx: Context, findings: list[dict]) -> list[dict[str, str]]:
    """The finding's recommendations, the fix of its root cause first, without repeated codes."""
    advice = _ADVISORS[finding["code"]](finding, ctx, {f["code"]: f for f in findings})
    seen, unique = set(), []
    for item in advice:
        if item is not None and item["code"] not in seen:
            seen.add(item["code"])
            unique.append(item)
    return unique


def _rec(code: str, text: str) -> dict[str, str]:
    return {"code": code, "text": text}


def init_code(ctx: Context) -> str:
    """The initialisation that keeps signal scale for the network's activation: He, Xavier or orthogonal."""
    hidden = ctx.weights[:-1] or ctx.weights  # the classifier's own activation says nothing
    main = statistics.mode([ctx.activation_after(s.name) for s in hidden] or ["relu"])
    if main in ("tanh", "sigmoid", "selu"):
        return "reinit_xavier"
    return "reinit_orthogonal" if main == "linear" else "reinit_he"


def _reinit(ctx: Context, names: list[str], why: str) -> dict[str, str]:
    code = init_code(ctx)
    return _rec(code, f"Re-initialise {span(names)} with {_INIT_CALLS[code]}: {why}.")


def _poor_init(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    if finding["severity"] == "critical":
        why = "random weights break the symmetry between units; keep constant values only for biases"
    else:
        why = "each layer then keeps the scale of the signal and of its gradient (gain about 1 per layer)"
    return [_reinit(ctx, finding["layers"], why), _normalize(ctx)]


def _dead(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    negative = _negative_bias_layers(ctx, finding["layers"])
    advice = []
    if negative:
        advice.append(_rec("reset_biases", (
            f"Biases of {span(negative)} are strongly negative and keep the following ReLUs below zero: reset them "
            "to zero (torch.nn.init.zeros_) or a small positive value such as 0.01.")))
    advice.append(_rec("use_leaky_relu", (
        f"Replace the ReLUs {span(finding['layers'])} with LeakyReLU (negative_slope=0.01) so a unit that is "
        "off still passes gradient and can recover.")))
    narrow = [s for s in ctx.weights if s.batch_rows and s.batch_rows[0]["numel"] // ctx.facts.batch_size <= 8]
    if narrow and len(ctx.weights) >= 10:
        advice.append(_rec("reduce_depth", (
            f"{len(ctx.weights)} weight layers of width as small as {narrow[0].batch_rows[0]['numel'] // ctx.facts.batch_size}"
            ": a deep narrow ReLU stack is born dead with high probability (Lu et al. 2019); use fewer, wider layers.")))
    advice.append(_reinit(ctx, finding["layers"], "He scaling keeps half of each layer's units active"))
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
    kinds = "/".join(finding["evidence"]["kinds"])
    relu = _rec("use_relu", (
        f"The outputs of {span(finding['layers'])} ({kinds}) sit in its flat region: replace with ReLU and re-initialise "
        "the weight layers before them He-normal (torch.nn.init.kaiming_normal_)."))
    init = by_code.get("poor_initialization")
    if init is None:
        return [relu, _normalize(ctx)]
    return [_reinit(ctx, init["layers"], "smaller weights bring the pre-activations back to the region where the "
                    f"{kinds} derivative is large"), relu]


def _vanishing(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    advice = [] if "poor_initialization" not in by_code else _poor_init(by_code["poor_initialization"], ctx, by_code)
    if "saturated_activation" in by_code:
        advice += _saturated(by_code["saturated_activation"], ctx, by_code)
    squashing = [s.name for s in ctx.weights if ctx.activation_after(s.name) in ("sigmoid", "tanh")]
    if squashing:
        kinds = sorted({ctx.activation_after(name) for name in squashing})
        advice.append(_rec("use_relu", (
            f"The {span(squashing)} are followed by {'/'.join(kinds)}, whose derivative (at most 0.25 for sigmoid) "
            "shrinks the gradient at every layer: replace with ReLU and re-initialise He-normal "
            f"(torch.nn.init.kaiming_normal_); the gradient now falls {abs(finding['evidence'].get('slope_decades_per_layer', 0)):.2f} "
            "decades per weight layer.")))
    advice += [_normalize(ctx), _skip(ctx, finding["layers"]),
               _reinit(ctx, finding["layers"], "each layer then keeps the gradient's scale")]
    return [a for a in advice if a]


def _exploding(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    advice = [] if "poor_initialization" not in by_code else _poor_init(by_code["poor_initialization"], ctx, by_code)
    if "missing_normalization" in by_code:
        advice += _missing_norm(by_code["missing_normalization"], ctx, by_code)
    advice.append(_clip(ctx))
    if not advice[:-1]:
        advice.append(_reinit(ctx, finding["layers"], "each layer's gain should be about 1"))
    return advice


def _clip(ctx: Context) -> dict[str, str]:
    norms = [s.grad_norm for s in ctx.weights if s.grad_norm > 0] or [1.0]
    median = statistics.median(norms)
    max_norm = float(f"{CLIP_FACTOR * median:.2g}")
    return _rec("clip_gradients", (
        f"Clip the total gradient norm with torch.nn.utils.clip_grad_norm_(parameters, max_norm={max_norm:g}): "
        f"{CLIP_FACTOR:g}x the median per-layer gradient norm measured here ({median:.3g}) under this loss."))


def _missing_norm(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    advice = []
    if ctx.facts.structure and ctx.facts.structure.skips:
        advice.append(_rec("scale_residual_branches", (
            f"The {ctx.facts.structure.skips} residual additions each add a branch of full scale: zero-initialise "
            "the last layer of every residual branch and scale the others by L^(-1/(2m-2)) (Fixup, Zhang et al. "
            "2019), or add normalization inside each branch.")))
    advice.append(_normalize(ctx) or _rec("add_batch_norm", "Add BatchNorm after the weight layers."))
    return advice


def _normalize(ctx: Context) -> dict[str, str] | None:
    if ctx.facts.structure is not None and ctx.facts.structure.normalizations:
        return None
    if any(ctx.op_counts.get(op) for op in ("batch_norm", "layer_norm", "group_norm", "instance_norm")):
        return None
    return _rec("add_batch_norm", (
        f"No normalization layer was found: add BatchNorm (LayerNorm for sequences) after each of the "
        f"{len(ctx.weights)} weight layers, before the activation, so every layer's input stays at unit scale."))


def _skip(ctx: Context, names: list[str]) -> dict[str, str] | None:
    if ctx.facts.structure is not None and ctx.facts.structure.skips:
        return None
    return _rec("add_skip_connections", (
        f"Add residual connections (x + f(x)) around blocks of {span(names)} so the gradient can reach the "
        "input side without crossing every layer."))


def _deep_plain(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    path = finding["evidence"]["shortest_gradient_path_weight_layers"]
    return [
        _skip(ctx, finding["layers"]) or _rec("add_skip_connections", "Add residual connections."),
        _rec("reduce_depth", f"Or use fewer layers: the gradient crosses {path} weight layers in a row."),
    ]


def _recurrent(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    return [
        _rec("use_lstm_or_gru", (
            f"Replace the plain recurrence {span(finding['layers'])} with an LSTM or GRU, whose gated cell state "
            "carries the gradient across many time steps.")),
        _rec("reinit_orthogonal", "Or initialise the recurrent matrix orthogonal (torch.nn.init.orthogonal_)."),
    ]


def _nonfinite(finding: dict, ctx: Context, by_code: dict) -> list[dict]:
    advice = []
    if ctx.weight_nonfinite:
        advice.append(_rec("reinit_xavier", (
            f"Weights of {sorted(ctx.weight_nonfinite)} already hold NaN/Inf: re-initialize them "
            "(torch.nn.init.xavier_uniform_) or restore a checkpoint from before training diverged.")))
    advice.append(_rec("clip_gradients", (
        f"Guard the operation after layer '{finding['evidence']['first_layer']}' that produces NaN/Inf (log or "
        "sqrt of non-positive values, division by zero, exp overflow: clamp or add an epsilon), and clip "
        "gradients with torch.nn.utils.clip_grad_norm_ so one bad step cannot blow the weights up.")))
    return advice


_ADVISORS = {
    "nonfinite_values": _nonfinite, "poor_initialization": _poor_init, "dead_relu": _dead,
    "saturated_activation": _saturated, "recurrent_long_range": _recurrent, "vanishing_gradient": _vanishing,
    "missing_normalization": _missing_norm, "exploding_gradient": _exploding, "deep_plain_stack": _deep_plain,
}
