"""The graph edit that makes chosen BatchNorm layers of an exported program normalise with batch statistics. An
eval-mode export fixes `training=False` in each BatchNorm call (aten.batch_norm's argument, or the choice of
_native_batch_norm_legit_no_training after decomposition), so switching the module to train mode changes nothing:
the edit rewrites the calls, with momentum 0 so the running statistics stay as they are."""

from __future__ import annotations

import torch

from worker.engine.pt2.calls import module_path

aten = torch.ops.aten
_TRAINING, _MOMENTUM = 5, 6  # positions in aten::batch_norm(input, weight, bias, mean, var, training, momentum, ...)
# Eval-mode forms written by decompositions -> their training-mode twins with the same arguments and outputs.
_TRAINING_TWIN = {
    aten._native_batch_norm_legit_no_training.default: aten._native_batch_norm_legit.default,
    aten._batch_norm_no_update.default: aten._batch_norm_with_update.default,
}


def use_batch_statistics(module: torch.fx.GraphModule, names: set[str], root_name: str) -> None:
    """Rewrite every BatchNorm call of a module in `names` to normalise with batch statistics; recompile."""
    for node in module.graph.nodes:
        path = module_path(node)
        if node.op != "call_function" or path is None or (path or root_name) not in names:
            continue
        if node.target is aten.batch_norm.default:
            node.update_arg(_TRAINING, True)
            node.update_arg(_MOMENTUM, 0.0)
        elif node.target in _TRAINING_TWIN:
            _switch_to_training(node)
    module.recompile()


def _switch_to_training(node: torch.fx.Node) -> None:
    momentum_position = 5  # (input, weight, bias, running_mean, running_var, momentum, eps)
    args = list(node.args)
    if node.target is aten._native_batch_norm_legit_no_training.default:
        args[momentum_position:momentum_position + 1] = [True, 0.0]  # (..., training, momentum, eps)
    else:
        args[momentum_position] = 0.0
    node.target = _TRAINING_TWIN[node.target]
    node.args = tuple(args)
