"""torch.export's names mapped to the engine's words. Module classes are torch.nn's, as in TorchScript, so their
roles are the same table; the graph's aten ops are named by schema ('aten::linear'), extended with the forms the
export and its decompositions write."""

from __future__ import annotations

import torch

from worker.engine.torchscript import vocabulary as torchscript

ROLES = torchscript.ROLES
LAYOUT_MODULES = frozenset({
    "Identity", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
})
_BATCH_NORMS = ("aten::_native_batch_norm_legit_no_training", "aten::_native_batch_norm_legit",
                "aten::native_batch_norm", "aten::_batch_norm_with_update", "aten::_batch_norm_no_update")
WEIGHT_OPS = torchscript.WEIGHT_OPS | {"aten::convolution"}
NORMALIZATION_OPS = torchscript.NORMALIZATION_OPS | set(_BATCH_NORMS)
MERGE_OPS = torchscript.MERGE_OPS
OP_COUNT_NAMES = {**torchscript.OP_COUNT_NAMES, **dict.fromkeys(_BATCH_NORMS, "batch_norm"),
                  "aten::native_layer_norm": "layer_norm", "aten::native_group_norm": "group_norm"}


def op_name(node: torch.fx.Node) -> str | None:
    """The schema name of an fx node's aten op ('aten::relu_'), or None for anything else."""
    schema = getattr(node.target, "_schema", None)
    return schema.name if node.op == "call_function" and schema is not None else None
