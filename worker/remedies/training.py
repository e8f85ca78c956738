"""The training comparison: the original network and a patched copy trained from their own starting weights on the
same synthetic task (the probe batches in turn, the probe's loss and targets), with the same optimizer, learning
rate and seed, so the two loss curves differ only by the patch. Clipping is judged the same way: the original
trained with and without torch.nn.utils.clip_grad_norm_."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from worker.engine.batches import ProbeBatches
from worker.engine.formats import load_network, use_batch_statistics
from worker.engine.normalization import batch_statistics
from worker.engine.training import optimizer_for, training_step, update_to_weight

DEFAULT_STEPS = 20
# Networks up to this many parameters get the training comparison by default: 20 steps of a network this size
# cost about as much as the probe itself on a CPU.
PARAMETER_BUDGET = 2_000_000
DIVERGED = 10.0  # a final loss this many times the first, or a non-finite one, is a diverged run


@dataclass
class TrainingComparison:
    """Trains copies of the network saved at `original` (ONNX) for `steps` steps each."""

    original: Path
    batches: ProbeBatches
    options: AuditOptions
    steps: int
    device: str
    _baseline: dict | None = field(default=None, repr=False)

    def setup(self) -> dict:
        return {"steps": self.steps, "optimizer": self.options.optimizer,
                "learning_rate": self.options.learning_rate, "parameter_budget": PARAMETER_BUDGET,
                "task": "the probe batches in turn, with the probe's loss and targets; same seed for both copies"}

    def compare(self, patched: Path) -> dict | None:
        """Both loss curves; None where training either copy failed (the verification stands without it)."""
        try:
            original, patched_run = self._original(), _train(patched, self.batches, self.options, self.steps,
                                                             self.device)
        except AuditError:
            return None
        return {"steps": self.steps, "loss_original": original["losses"], "loss_patched": patched_run["losses"]}

    def compare_clipping(self, max_norm: float) -> dict:
        """Status of clip_grad_norm_(max_norm) from training with and without it: resolved where only the
        unclipped run diverges, improved where clipping at least halves the largest update-to-weight ratio."""
        original = self._original()
        clipped = _train(self.original, self.batches, self.options, self.steps, self.device, max_norm=max_norm)
        before, after = original["max_update_to_weight"], clipped["max_update_to_weight"]
        if _diverged(original["losses"]) and not _diverged(clipped["losses"]):
            status = "resolved"
        elif before is not None and after is not None and after <= 0.5 * before:
            status = "improved"
        elif _diverged(clipped["losses"]) and not _diverged(original["losses"]):
            status = "worse"
        else:
            status = "no_effect"
        return {"status": status, "before": before, "after": after,
                "training": {"steps": self.steps, "max_norm": max_norm, "loss_original": original["losses"],
                             "loss_patched": clipped["losses"]}}

    def _original(self) -> dict:
        if self._baseline is None:
            self._baseline = _train(self.original, self.batches, self.options, self.steps, self.device)
        return self._baseline


def default_steps(parameters: int) -> int:
    """verify_steps when the options leave it unset: DEFAULT_STEPS up to the parameter budget, else none."""
    return DEFAULT_STEPS if parameters <= PARAMETER_BUDGET else 0


def _train(path: Path, batches: ProbeBatches, options: AuditOptions, steps: int, device: str,
           max_norm: float | None = None) -> dict:
    network = load_network(path, "onnx")
    batch_size = max(1, int(next(iter(batches.inputs[0].values())).shape[0]))
    # BatchNorm as the audit probes it: a fresh one (an added, uncalibrated one) on batch statistics.
    use_batch_statistics(network, batch_statistics(network.batch_norms, options.normalization, batch_size))
    module = network.module.to(device).train(False)
    parameters = [p for p in module.parameters() if p.is_floating_point()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    torch.manual_seed(options.seed)
    optimizer = optimizer_for(options, parameters)
    losses, ratios = [], []
    for step in range(steps):
        before = [p.detach().clone() for p in parameters]
        value = training_step(module, optimizer, batches, step, options.loss, device, max_norm=max_norm)
        losses.append(round(value, 6) if value is not None else None)
        ratio = update_to_weight(before, parameters)
        ratios.append(ratio if ratio is not None and math.isfinite(ratio) else None)
    finite = [r for r in ratios if r is not None]
    return {"losses": losses, "max_update_to_weight": round(max(finite), 6) if finite else None}


def _diverged(losses: list[float | None]) -> bool:
    if not losses or losses[-1] is None or any(loss is None for loss in losses):
        return True
    return losses[0] > 0 and losses[-1] > DIVERGED * losses[0]
