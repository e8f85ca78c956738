"""ONNX's operator names mapped to the engine's words: each layer kind's role, and the op names counted."""

from __future__ import annotations

from worker.diagnosis.facts import ACTIVATION, MERGE, NORMALIZATION, RECURRENT, WEIGHT, LayerRole
from worker.engine.network import RECURRENCES

_WEIGHT = LayerRole(WEIGHT)
_NORMALIZATION = LayerRole(NORMALIZATION)
_MERGE = LayerRole(MERGE)

ROLES: dict[str, LayerRole] = {
    **dict.fromkeys(("Conv", "ConvTranspose", "Gemm", "MatMul"), _WEIGHT),
    **RECURRENCES,
    **dict.fromkeys(("BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
                     "RMSNormalization"), _NORMALIZATION),
    **{op: LayerRole(ACTIVATION, function) for op, function in {
        "Relu": "relu", "LeakyRelu": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Gelu": "gelu",
        "Elu": "elu", "Selu": "selu", "Mish": "silu", "HardSwish": "hardswish", "Erf": "gelu"}.items()},
    **dict.fromkeys(("Add", "Sum", "Concat"), _MERGE),
}
WEIGHT_OPS = frozenset(op for op, role in ROLES.items() if role.role in (WEIGHT, RECURRENT))
NORMALIZATION_OPS = frozenset(op for op, role in ROLES.items() if role.role == NORMALIZATION)
# The ops the diagnosis counts over the whole graph, under their normalised names.
OP_COUNT_NAMES = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Gelu": "gelu",
    "Elu": "elu", "BatchNormalization": "batch_norm", "LayerNormalization": "layer_norm",
    "InstanceNormalization": "instance_norm", "GroupNormalization": "group_norm",
}
