"""BatchNorm in a TorchScript network: which modules hold running statistics, and the graph edit that makes
chosen ones normalise with batch statistics. A traced graph fixes `training` as a constant when it is traced, so
switching the module to train mode would change nothing: the edit sets the call's own arguments."""

from __future__ import annotations

from collections.abc import Callable

import torch

from worker.engine.normalization import BatchNormLayer, has_initial_statistics

_TRAINING, _MOMENTUM = 5, 6  # positions in aten::batch_norm(input, weight, bias, mean, var, training, momentum, ...)


def batch_norm_layers(module: torch.jit.ScriptModule) -> list[BatchNormLayer]:
    """Every module holding running statistics of its own, named as the report names layers."""
    layers = []
    for path, submodule in module.named_modules():
        buffers = dict(submodule.named_buffers(recurse=False))
        if "running_mean" in buffers and "running_var" in buffers:
            initial = has_initial_statistics(buffers["running_mean"], buffers["running_var"])
            layers.append(BatchNormLayer(path or module.original_name, initial))
    return layers


def batch_statistics_edit(names: set[str], root_name: str) -> Callable[[torch._C.Graph], None]:
    """An edit of an inlined graph: every aten::batch_norm reading the running statistics of a module in
    `names` normalises with batch statistics (training=True) and leaves them unchanged (momentum=0)."""

    def edit(graph: torch._C.Graph) -> None:
        for node in graph.findAllNodes("aten::batch_norm", recurse=True):
            owner = attribute_path(node.inputsAt(3)).rpartition(".")[0]
            if (owner or root_name) in names:
                with graph.insert_point_guard(node):
                    training, momentum = graph.insertConstant(True), graph.insertConstant(0.0)
                node.replaceInput(_TRAINING, training)
                node.replaceInput(_MOMENTUM, momentum)

    return edit


def attribute_path(value: torch._C.Value) -> str:
    """The dotted attribute path a value is read from (prim::GetAttr chain from the module), e.g. '1.weight'."""
    names = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.input().node()
    return ".".join(reversed(names))
