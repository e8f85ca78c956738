"""The probe: forward, loss and backward over several batches, leaving the mean gradient on the parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gradaudit.errors import AuditError, one_line
from worker.engine import progress
from worker.engine.output_stats import Recorder


@dataclass(frozen=True)
class FirstOutput:
    """What the first batch produced: the output tensor the loss was taken of, its position among the
    network's outputs, and the loss actually applied."""

    output: torch.Tensor
    index: int
    loss_name: str


def run_probe(module: torch.nn.Module, forward: Callable, batches: list[list[torch.Tensor]], *, loss: str,
              seeds: list[int], recorder: Recorder) -> FirstOutput:
    """Run every batch; parameter gradients end as their mean over the batches (the mean loss's gradient)."""
    module.zero_grad(set_to_none=True)
    outputs = []
    for inputs, seed in zip(batches, seeds):
        recorder.start_batch()
        outputs.append(_one_batch(forward, inputs, loss=loss, seed=seed, recorder=recorder))
        progress.report("probing", len(outputs) / len(batches))
    _average_gradients(module, len(batches))
    return outputs[0]


def _one_batch(forward: Callable, inputs: list[torch.Tensor], *, loss: str, seed: int, recorder: Recorder) -> FirstOutput:
    torch.manual_seed(seed)
    index, output = _forward(forward, inputs)
    loss_name, value = make_loss(output, loss, torch.Generator().manual_seed(seed))
    recorder.record_loss(value)
    try:
        value.backward()
    except Exception as exc:
        raise AuditError("backward_failed", one_line(exc)) from None
    return FirstOutput(output.detach(), index, loss_name)


def exported_output(forward: Callable, inputs: list[torch.Tensor]) -> FirstOutput:
    """The output the loss would be taken of on one batch, from a forward pass alone (no loss applied)."""
    index, output = _forward(forward, inputs)
    return FirstOutput(output.detach(), index, "")


def _forward(forward: Callable, inputs: list[torch.Tensor]) -> tuple[int, torch.Tensor]:
    """The output the loss is taken of, with its position among the outputs; AuditError if forward fails."""
    try:
        outputs = forward(*inputs)
    except Exception as exc:
        raise AuditError("forward_failed", one_line(exc)) from None
    return pick_output(outputs)


def _average_gradients(module: torch.nn.Module, batches: int) -> None:
    if batches > 1:
        for parameter in module.parameters():
            if parameter.grad is not None:
                parameter.grad.div_(batches)


def flatten_outputs(outputs) -> list:
    """Every leaf of a nested tuple/list/dict of outputs, in order."""
    if isinstance(outputs, (tuple, list)):
        return [leaf for item in outputs for leaf in flatten_outputs(item)]
    if isinstance(outputs, dict):
        return [leaf for item in outputs.values() for leaf in flatten_outputs(item)]
    return [outputs]


def pick_output(outputs) -> tuple[int, torch.Tensor]:
    """The first floating-point output that autograd can reach, with its position among the leaves."""
    for index, leaf in enumerate(flatten_outputs(outputs)):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.requires_grad:
            return index, leaf
    raise AuditError(
        "no_differentiable_output",
        "no output is a floating-point tensor that depends on the network's parameters",
    )


def make_loss(output: torch.Tensor, loss: str, generator: torch.Generator) -> tuple[str, torch.Tensor]:
    """The loss name actually used and its scalar value for this output."""
    if loss == "auto":
        loss = "cross_entropy" if _fits_cross_entropy(output) else "mse"
    if loss == "sum":
        return loss, output.float().sum()
    if loss == "mse":
        target = torch.randn(output.shape, generator=generator).to(output.device)
        return loss, F.mse_loss(output.float(), target)
    if not _fits_cross_entropy(output):
        raise AuditError(
            "loss_not_applicable",
            f"cross_entropy needs an output of shape [N, C] with C > 1, got {list(output.shape)}",
        )
    labels = torch.randint(0, output.shape[1], (output.shape[0],), generator=generator).to(output.device)
    return loss, F.cross_entropy(output.float(), labels)


def _fits_cross_entropy(output: torch.Tensor) -> bool:
    return output.dim() == 2 and output.shape[1] > 1
