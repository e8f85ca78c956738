"""nonfinite_values: NaN or Inf that reach the loss, a gradient or a weight.

A value made non-finite on purpose and then masked (an attention mask adding -inf or finfo.min to scores that
only feed a softmax, whose exp is then exactly 0) leaves the loss, every gradient and every weight finite:
training never sees it, so it is not a finding. Whatever reaches the loss, a gradient or a weight always is.
"""

from __future__ import annotations

from worker.diagnosis.common import Context, finding


def detect(ctx: Context) -> list[dict]:
    """One critical finding naming the first layer (forward order, else backward) where NaN/Inf appear."""
    backward = _backward_layers(ctx)
    if ctx.loss_finite and not backward:
        return []
    forward = [s.name for s in ctx.layers if any(_nonfinite_output(row) for row in s.batch_rows)]
    first = forward[0] if forward else backward[0] if backward else None
    evidence = {
        "loss_finite": ctx.loss_finite,
        "first_layer": first,
        "first_layer_rule": "first layer whose output holds NaN/Inf in the forward pass; if none, the layer "
                            "nearest the output whose gradient does (backward order)",
        "forward_layers": forward,
        "backward_layers": backward,
        "nonfinite_gradient_entries": sum(s.grad_nonfinite for s in ctx.layers),
        "nonfinite_weight_entries": sum(ctx.weight_nonfinite.values()),
    }
    title = "NaN or Inf in the loss or gradients" + (f", first at layer '{first}'" if first else "")
    return [finding("nonfinite_values", "critical", title, forward or backward, evidence, 0.99)]


def _backward_layers(ctx: Context) -> list[str]:
    """Layers with a non-finite parameter gradient, weight or output gradient, deepest first: backward runs
    from the output, so that is where NaN/Inf first show up."""
    return [s.name for s in sorted(ctx.layers, key=lambda s: -s.depth)
            if s.grad_nonfinite or s.name in ctx.weight_nonfinite or any(
                (row.get("output_grad_nonfinite") or 0) > 0 for row in s.batch_rows)]


def _nonfinite_output(row: dict) -> bool:
    # The recorder reports a non-finite mean or std as None; a measured row always has both.
    return row.get("numel") and (row.get("activation_mean") is None or row.get("activation_std") is None)
