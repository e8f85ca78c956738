"""The optional short training probe: a few SGD or Adam steps on the probe batches before the audit's probe."""

from __future__ import annotations

import torch

from gradaudit.errors import AuditError, one_line
from gradaudit.options import AuditOptions
from worker.engine.batches import ProbeBatches
from worker.engine.probe import FirstOutput, make_loss, pick_output


def train_briefly(module: torch.nn.Module, batches: ProbeBatches, options: AuditOptions,
                  device: str) -> tuple[dict, FirstOutput | None]:
    """Update the module in place for options.train_steps steps. Returns what was done, for setup (empty if
    nothing), and the first step's output on batch 0 with the uploaded weights, for the onnxruntime parity."""
    if options.train_steps == 0:
        return {}, None
    parameters = [p for p in module.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in parameters]
    optimizer, first = optimizer_for(options, parameters), []
    losses = [training_step(module, optimizer, batches, step, options.loss, device, first)
              for step in range(options.train_steps)]
    module.zero_grad(set_to_none=True)
    return {"training": {
        "steps": options.train_steps, "optimizer": options.optimizer, "learning_rate": options.learning_rate,
        "batches": "the probe batches in turn, with the probe's loss", "first_loss": losses[0],
        "last_loss": losses[-1], "update_to_weight": update_to_weight(before, parameters),
    }}, first[0]


def optimizer_for(options: AuditOptions, parameters: list) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=options.learning_rate)
    return torch.optim.SGD(parameters, lr=options.learning_rate)


def training_step(module, optimizer, batches: ProbeBatches, step: int, loss: str, device: str,
                  first: list | None = None, max_norm: float | None = None) -> float | None:
    """One update on the probe batch `step` picks, clipped to max_norm when given; its loss (None if not finite).
    Given an empty `first`, records the output in it (the uploaded weights', for the parity check)."""
    index = step % len(batches.inputs)
    optimizer.zero_grad(set_to_none=True)
    try:
        position, output = pick_output(module(*[t.to(device) for t in batches.inputs[index].values()]))
        name, value = make_loss(output, loss, torch.Generator().manual_seed(batches.seeds[index]))
        if first is not None and not first:
            first.append(FirstOutput(output.detach(), position, name))
        value.backward()
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError("backward_failed", f"training step {step}: {one_line(exc)}") from None
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_norm)
    optimizer.step()
    value = value.detach()
    return float(value) if torch.isfinite(value) else None


def update_to_weight(before: list[torch.Tensor], parameters: list) -> float | None:
    """Total ||w_after - w_before|| / ||w_before|| over all parameters (about 1e-3 per step is the usual aim)."""
    change = sum(float((p.detach() - b).square().sum()) for p, b in zip(parameters, before)) ** 0.5
    size = sum(float(b.square().sum()) for b in before) ** 0.5
    return change / size if size > 0 else None
