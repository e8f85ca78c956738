"""The audit engine: plain functions that load a network, probe its gradients over a few batches, diagnose."""

from __future__ import annotations

from pathlib import Path

import torch

from gradaudit.options import AuditOptions
from worker.engine.device import resolve_device
from worker.engine.detectors import network_facts
from worker.engine.diagnose import diagnose, verdict
from worker.engine.errors import AuditError
from worker.engine.activation_stats import SAMPLING_RULE, SATURATION_RULE, Recorder
from worker.engine.batches import ProbeBatches, probe_batches
from worker.engine.load import LoadedNetwork, detect_format, load_network
from worker.engine.probe import Probe, flatten_outputs, run_probe
from worker.engine.result import EngineResult, LayerStats
from worker.engine.stats import layer_stats
from worker.engine.taps import Taps, observed_layers, taps_for
from worker.engine.torchscript_taps import TapsUnavailable
from worker.engine.training import train_briefly

__all__ = ["AuditError", "EngineResult", "LayerStats", "audit_network", "resolve_device"]


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
    device = resolve_device(device)
    network, batches, reference = _load(Path(path), network_format, external_data_dir, options,
                                        Path(inputs_path) if inputs_path else None)
    module = _trainable_on(network.module, device)
    training, untrained = train_briefly(module, batches, options, device)  # options.train_steps updates, if any
    probe, taps, recorder = _probe(network, module, batches, options.loss, device)
    parity = _parity(reference, untrained or probe, None if untrained else (module, batches, device))
    per_batch, losses = recorder.fetch()
    observed, probes = observed_layers(taps.layers, _per_layer(per_batch, batches.seeds, taps))
    layers, weight_nonfinite = layer_stats(module, observed, probes)
    loss_value = _mean(losses)
    facts = network_facts(network, module, observed, batches.inputs[0])
    findings = diagnose(layers, loss_finite=loss_value is not None, op_counts=network.op_counts,
                        weight_nonfinite=weight_nonfinite, facts=facts)
    return EngineResult(
        network={"format": network.format, "parameters": sum(s.parameters for s in layers), "layers": len(layers)},
        setup={**_setup(network, batches, probe, options, device), **_probe_setup(taps, losses, loss_value),
               **parity, **training},
        layers=layers,
        findings=findings,
        verdict=verdict(findings),
    )


def _probe(network: LoadedNetwork, module: torch.nn.Module, batches: ProbeBatches, loss: str,
           device: str) -> tuple[Probe, Taps, Recorder]:
    """The probe with every layer output tapped; for TorchScript, without taps if the rewritten graph fails."""
    taps = taps_for(network)
    try:
        return _run(module, taps, batches, loss, device)
    except (AuditError, TapsUnavailable) as failed:
        if network.format != "torchscript" or not taps.tapped:
            raise
        why = failed.detail if isinstance(failed, AuditError) else str(failed)
        plain = Taps(list(network.layers), f"unavailable: the rewritten graph failed ({why})")
        return _run(module, plain, batches, loss, device)


def _run(module: torch.nn.Module, taps: Taps, batches: ProbeBatches, loss: str,
         device: str) -> tuple[Probe, Taps, Recorder]:
    recorder = Recorder([layer.kind for layer in taps.layers])
    on_device = [[tensor.to(device) for tensor in inputs.values()] for inputs in batches.inputs]
    with taps.forward(module, recorder) as forward:
        probe = run_probe(module, forward, on_device, loss=loss, seeds=batches.seeds, recorder=recorder)
    return probe, taps, recorder


def _per_layer(per_batch: list[list[dict | None]], seeds: list[int], taps: Taps) -> list[list[dict]]:
    """Per layer, its measured batches, each row with its batch index and seed."""
    return [[{"batch": b, "seed": seeds[b], **rows[index]} for b, rows in enumerate(per_batch) if rows[index]]
            for index in range(len(taps.layers))]


def _mean(losses: list[float | None]) -> float | None:
    if not losses or any(value is None for value in losses):
        return None
    return sum(losses) / len(losses)


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


def _setup(network: LoadedNetwork, batches: ProbeBatches, probe: Probe, options: AuditOptions,
           device: str) -> dict:
    shapes = {name: list(tensor.shape) for name, tensor in batches.inputs[0].items()}
    first = next(iter(shapes.values()), [])
    return {
        "device": device,
        "batch_size": first[0] if first else options.batch_size,
        "seed": options.seed,
        "loss": probe.loss_name,
        "input_shapes": shapes,
        "output": _output_name(network, probe.output_index),
        "mode": "eval",
        **batches.setup,
        **network.notes,
    }


def _output_name(network: LoadedNetwork, index: int) -> str:
    if index < len(network.output_names):
        return network.output_names[index]
    return f"output[{index}]"


def _load(path: Path, network_format: str | None, external_data_dir: Path | None, options: AuditOptions,
          inputs_path: Path | None) -> tuple[LoadedNetwork, ProbeBatches, tuple | None]:
    """The network, its probe batches, and for ONNX onnxruntime's outputs on the first batch.

    onnxruntime holds its own copy of the weights while it runs, so it runs on the graph's declared inputs
    before conversion reads ours: the two copies never coexist.
    """
    network_format = network_format or detect_format(path)
    if network_format != "onnx":
        network = load_network(path, network_format)
        return network, probe_batches(network.inputs, options, inputs_path), None
    from worker.engine.onnx_load import convert_graph, read_onnx
    from worker.engine.ort_check import onnxruntime_outputs

    graph = read_onnx(path, external_data_dir)
    batches = probe_batches(graph.inputs, options, inputs_path)
    reference = onnxruntime_outputs(path, batches.inputs[0])
    return convert_graph(graph), batches, reference


def _parity(reference, probe: Probe, uploaded: tuple | None) -> dict:
    """onnxruntime parity entries for setup (ONNX only); AuditError('conversion_mismatch') above tolerance.

    `uploaded` is (module, batches, device) while the module still holds the uploaded weights.
    """
    if reference is None:
        return {}
    from worker.engine.ort_check import float64_disagreement, parity_setup

    def sensitivity() -> float | None:
        if uploaded is None:
            return None
        module, batches, device = uploaded
        inputs = [tensor.to(device) for tensor in batches.inputs[0].values()]
        return float64_disagreement(module, inputs, lambda outputs: flatten_outputs(outputs)[probe.output_index])

    return parity_setup(*reference, probe.output_index, probe.output, sensitivity)
