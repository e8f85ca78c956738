"""One audit, top to bottom: open the network, choose the statistics its BatchNorm uses, optionally train it
briefly, probe it with every layer output tapped, measure each layer, hand the facts to the diagnosis."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from gradaudit.schema import SATURATION_RULE, LayerRecord
from worker.diagnosis.diagnose import diagnose, verdict
from worker.diagnosis.facts import NetworkFacts
from worker.engine import progress
from worker.engine.batches import ProbeBatches, probe_batches
from worker.engine.device import resolve_device
from worker.engine.facts import network_facts
from worker.engine.formats import OpenedNetwork, open_network, taps_for, use_batch_statistics
from worker.engine.network import LoadedNetwork
from worker.engine.normalization import batch_statistics
from worker.engine.normalization import setup_entries as normalization_setup
from worker.engine.output_stats import SAMPLING_RULE, Recorder
from worker.engine.parameter_stats import layer_records, parameter_total
from worker.engine.probe import FirstOutput, exported_output, run_probe
from worker.engine.taps import Taps, observed_layers
from worker.engine.torchscript.tapping import TapsUnavailable
from worker.engine.training import train_briefly


@dataclass(frozen=True)
class EngineResult:
    """Everything one audit found: the network summary, how it was probed, layers, findings, verdict."""

    network: dict[str, Any]  # {"format", "parameters", "layers"}
    setup: dict[str, Any]  # gradaudit.schema.Setup
    layers: list[LayerRecord]
    findings: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "healthy"  # healthy | warning | critical
    combined: dict[str, Any] | None = None  # the combined patch of verified remedies (worker/remedies)
    fixes: dict[str, str] = field(default_factory=dict)  # patched networks written: key -> path in the work folder


@dataclass(frozen=True)
class Probed:
    """An audit's result with what verification reuses in the same process (never sent on): the facts the
    diagnosis read and the probe batches."""

    result: EngineResult
    facts: NetworkFacts
    batches: ProbeBatches


def audit_network(
    path: Path,
    *,
    options: AuditOptions,
    device: str = "auto",
    inputs_path: Path | None = None,
    network_format: str | None = None,
    external_data_dir: Path | None = None,
) -> EngineResult:
    """Audit the gradients of the network stored at path; AuditError with a stable code if it cannot.

    An ONNX network's external weight files are read from external_data_dir only (an extracted archive).
    """
    return probe_network(path, options=options, device=device, inputs_path=inputs_path,
                         network_format=network_format, external_data_dir=external_data_dir).result


def probe_network(path: Path, *, options: AuditOptions, device: str = "auto", inputs_path: Path | None = None,
                  network_format: str | None = None, external_data_dir: Path | None = None) -> Probed:
    """audit_network's work, keeping the facts and batches for whoever re-probes a patched copy."""
    device = resolve_device(device)
    inputs_path = Path(inputs_path) if inputs_path else None
    progress.report("loading")
    make_batches = partial(probe_batches, options=options, inputs_path=inputs_path)
    opened = open_network(path, network_format, external_data_dir, make_batches)
    return probe_opened(opened, options=options, device=device)


def probe_opened(opened: OpenedNetwork, *, options: AuditOptions, device: str) -> Probed:
    """Probe and diagnose a network already loaded with its batches. Without a parity check in `opened` (a
    patched copy, converted in memory: the upload's parity was checked once, by its audit) none is made."""
    network, batches = opened.network, opened.batches
    module = _trainable_on(network.module, device)
    batch_size = _batch_size(batches)
    on_batch_statistics = batch_statistics(network.batch_norms, options.normalization, batch_size)
    # Parity compares with the network as exported, so it is taken before BatchNorm changes its statistics.
    early = _parity_as_exported(opened, module, batches, device) if on_batch_statistics else None
    use_batch_statistics(network, on_batch_statistics)
    progress.report("probing")  # the optional training steps included
    training, untrained = train_briefly(module, batches, options, device)  # options.train_steps updates, if any
    first_output, taps, recorder = _probe(module, taps_for(network), batches, options.loss, device)
    parity = early if early is not None else _parity(opened, untrained or first_output,
                                                    None if untrained else (module, batches, device))
    per_batch, losses = recorder.fetch()
    observed, batch_rows = observed_layers(taps.layers, _per_layer(per_batch, batches.seeds, taps))
    layers, weight_nonfinite = layer_records(module, observed, batch_rows)
    loss_value = _mean(losses)
    facts = network_facts(network, module, observed, layers, batch_size=batch_size,
                          loss_finite=loss_value is not None, weight_nonfinite=weight_nonfinite)
    progress.report("diagnosing")
    findings = diagnose(facts)
    result = EngineResult(
        network={"format": network.format, "parameters": parameter_total(module, observed, network.same_parameters),
                 "layers": len(layers)},
        setup={**_setup(network, batches, first_output, options, device), **_probe_setup(taps, losses, loss_value),
               **parity, **training,
               **normalization_setup(network.batch_norms, on_batch_statistics, options.normalization)},
        layers=layers,
        findings=findings,
        verdict=verdict(findings),
    )
    return Probed(result, facts, batches)


def _probe(module: torch.nn.Module, taps: Taps, batches: ProbeBatches, loss: str,
           device: str) -> tuple[FirstOutput, Taps, Recorder]:
    """The probe with every layer output tapped; with the taps' fallback if running them fails."""
    try:
        return _run(module, taps, batches, loss, device)
    except (AuditError, TapsUnavailable) as failed:
        if taps.fallback is None or not taps.tapped:
            raise
        why = failed.detail if isinstance(failed, AuditError) else str(failed)
        plain = Taps(taps.fallback.layers, taps.fallback.description.format(why=why))
        return _run(module, plain, batches, loss, device)


def _run(module: torch.nn.Module, taps: Taps, batches: ProbeBatches, loss: str,
         device: str) -> tuple[FirstOutput, Taps, Recorder]:
    recorder = Recorder([layer.kind for layer in taps.layers])
    on_device = [[tensor.to(device) for tensor in inputs.values()] for inputs in batches.inputs]
    with taps.forward(module, recorder) as forward:
        first_output = run_probe(module, forward, on_device, loss=loss, seeds=batches.seeds, recorder=recorder)
    return first_output, taps, recorder


def _per_layer(per_batch: list[list[dict | None]], seeds: list[int], taps: Taps) -> list[list[dict]]:
    """Per layer, its measured batches, each row with its batch index and seed."""
    return [[{"batch": b, "seed": seeds[b], **rows[index]} for b, rows in enumerate(per_batch) if rows[index]]
            for index in range(len(taps.layers))]


def _mean(losses: list[float | None]) -> float | None:
    if not losses or any(value is None for value in losses):
        return None
    return sum(losses) / len(losses)


def _batch_size(batches: ProbeBatches) -> int:
    return max(1, int(next((t.shape[0] for t in batches.inputs[0].values() if t.dim()), 1)))


def _probe_setup(taps: Taps, losses: list[float | None], loss_value: float | None) -> dict:
    return {
        "loss_value": loss_value,
        "batch_losses": losses,
        "parameter_gradients": f"mean over the {len(losses)} batches (the gradient of the mean loss)",
        "layer_outputs": taps.description,
        "saturation": SATURATION_RULE,
        "output_statistics": SAMPLING_RULE,
    }


def _trainable_on(module: torch.nn.Module, device: str) -> torch.nn.Module:
    # Exported artifacts may carry requires_grad=False; the audit wants a gradient for every parameter.
    module = module.to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return module


def _setup(network: LoadedNetwork, batches: ProbeBatches, first_output: FirstOutput, options: AuditOptions,
           device: str) -> dict:
    shapes = {name: list(tensor.shape) for name, tensor in batches.inputs[0].items()}
    first = next(iter(shapes.values()), [])
    return {
        "device": device,
        "batch_size": first[0] if first else options.batch_size,
        "seed": options.seed,
        "loss": first_output.loss_name,
        "input_shapes": shapes,
        "output": _output_name(network, first_output.index),
        "mode": "eval",
        **batches.setup,
        **network.notes,
    }


def _output_name(network: LoadedNetwork, index: int) -> str:
    if index < len(network.output_names):
        return network.output_names[index]
    return f"output[{index}]"


def _parity_as_exported(opened: OpenedNetwork, module: torch.nn.Module, batches: ProbeBatches,
                        device: str) -> dict | None:
    """The parity entries from a forward pass of the network as loaded; None where the format has no parity."""
    if opened.parity is None:
        return None
    inputs = [tensor.to(device) for tensor in batches.inputs[0].values()]
    return _parity(opened, exported_output(module, inputs), (module, batches, device))


def _parity(opened: OpenedNetwork, first_output: FirstOutput, uploaded: tuple | None) -> dict:
    """The parity entries of setup where the format has a reference runtime (ONNX); AuditError
    ('conversion_mismatch') above tolerance. `uploaded` is (module, batches, device) while the module still
    holds the uploaded weights."""
    return opened.parity(first_output, uploaded) if opened.parity else {}
