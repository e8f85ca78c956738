"""TorchScript's names mapped to the engine's words: each module class's role, the aten ops that carry
weights or normalise (for the graph's structure), and the op names counted."""

from __future__ import annotations

from worker.diagnosis.facts import ACTIVATION, NORMALIZATION, WEIGHT, LayerRole
from worker.engine.network import RECURRENCES

_WEIGHT = LayerRole(WEIGHT)
_NORMALIZATION = LayerRole(NORMALIZATION)

# By module class (original_name), the kind a TorchScript layer reports.
ROLES: dict[str, LayerRole] = {
    **dict.fromkeys(("Linear", "NonDynamicallyQuantizableLinear", "Bilinear", "Conv1d", "Conv2d", "Conv3d"),
                    _WEIGHT),
    **RECURRENCES,
    **dict.fromkeys(("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm2d",
                     "RMSNorm"), _NORMALIZATION),
    **{module: LayerRole(ACTIVATION, function) for module, function in {
        "ReLU": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "GELU": "gelu",
        "ELU": "elu", "SiLU": "silu", "Mish": "silu", "SELU": "selu", "Hardswish": "hardswish"}.items()},
}
# By aten op, for the graph's structure.
WEIGHT_OPS = frozenset({"aten::linear", "aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
                        "aten::conv_transpose2d", "aten::addmm", "aten::rnn_tanh", "aten::rnn_relu", "aten::lstm",
                        "aten::gru", "aten::bilinear"})
NORMALIZATION_OPS = frozenset({"aten::batch_norm", "aten::layer_norm", "aten::instance_norm", "aten::group_norm",
                               "aten::rms_norm", "aten::native_layer_norm"})
MERGE_OPS = frozenset({"aten::add", "aten::add_"})
# The ops the diagnosis counts over the whole graph, under their normalised names.
OP_COUNT_NAMES = {
    "aten::relu": "relu", "aten::relu_": "relu", "aten::leaky_relu": "leaky_relu", "aten::sigmoid": "sigmoid",
    "aten::tanh": "tanh", "aten::gelu": "gelu", "aten::elu": "elu", "aten::batch_norm": "batch_norm",
    "aten::layer_norm": "layer_norm", "aten::instance_norm": "instance_norm", "aten::group_norm": "group_norm",
}
