"""The audit engine: plain functions that load a network, probe its gradients once and diagnose them."""

from __future__ import annotations

from pathlib import Path

import torch

from gradaudit.options import AuditOptions
from worker.engine.device import resolve_device
from worker.engine.diagnose import diagnose, verdict
from worker.engine.errors import AuditError
from worker.engine.inputs import build_inputs
from worker.engine.load import LoadedNetwork, load_network
from worker.engine.probe import Probe, run_probe
from worker.engine.result import EngineResult, LayerStats
from worker.engine.stats import layer_stats

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
    network = load_network(Path(path), network_format, external_data_dir)
    inputs = build_inputs(network.inputs, options, Path(inputs_path) if inputs_path else None)
    reference = _onnxruntime_reference(network, inputs)  # before the probe: onnxruntime's weights are gone by then
    module = _trainable_on(network.module, device)
    probe = run_probe(module, [t.to(device) for t in inputs.values()], loss=options.loss, seed=options.seed)
    parity = _parity(reference, probe)
    layers, weight_nonfinite = layer_stats(module, network.layers)
    findings = diagnose(layers, loss_finite=probe.loss_value is not None, op_counts=network.op_counts,
                        weight_nonfinite=weight_nonfinite)
    return EngineResult(
        network={"format": network.format, "parameters": sum(s.parameters for s in layers), "layers": len(layers)},
        setup={**_setup(network, inputs, probe, options, device), **parity},
        layers=layers,
        findings=findings,
        verdict=verdict(findings),
    )


def _trainable_on(module: torch.nn.Module, device: str) -> torch.nn.Module:
    # Exported artifacts may carry requires_grad=False; the audit wants a gradient for every parameter.
    module = module.to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return module


def _setup(network: LoadedNetwork, inputs: dict[str, torch.Tensor], probe: Probe, options: AuditOptions,
           device: str) -> dict:
    shapes = {name: list(tensor.shape) for name, tensor in inputs.items()}
    first = next(iter(shapes.values()), [])
    setup = {
        "device": device,
        "batch_size": first[0] if first else options.batch_size,
        "seed": options.seed,
        "loss": probe.loss_name,
        "loss_value": probe.loss_value,
        "input_shapes": shapes,
        "output": _output_name(network, probe.output_index),
        "mode": "eval",
        **network.notes,
    }
    return setup


def _output_name(network: LoadedNetwork, index: int) -> str:
    if index < len(network.output_names):
        return network.output_names[index]
    return f"output[{index}]"


def _onnxruntime_reference(network: LoadedNetwork, inputs: dict[str, torch.Tensor]):
    if network.source_path is None:
        return None
    from worker.engine.ort_check import onnxruntime_outputs

    return onnxruntime_outputs(network.source_path, inputs)


def _parity(reference, probe: Probe) -> dict:
    """onnxruntime parity entries for setup (ONNX only); AuditError('conversion_mismatch') above tolerance."""
    if reference is None:
        return {}
    from worker.engine.ort_check import parity_setup

    return parity_setup(*reference, probe.output_index, probe.output)
