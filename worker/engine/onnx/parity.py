"""Whether the converted torch network computes what onnxruntime computes, on the audit's own batch.

Tolerance: 1e-4 absolute, scaled by the output's magnitude when that exceeds 1
(tolerance = 1e-4 * max(1, max |onnxruntime output|)), so float32 rounding in large logits is not a mismatch.

A chaotic network (tanh layers with large weights, an RNN with spectral radius above 1) amplifies
rounding until two correct float32 implementations disagree by far more than that. So before calling
a difference a mismatch, the converted network is run once more in float64: if onnxruntime is within
SENSITIVITY_FACTOR times torch's own float32-vs-float64 difference, the gap is the network's
sensitivity to rounding, not a conversion error.
"""

from __future__ import annotations

import copy
import ctypes
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from gradaudit.errors import AuditError, one_line
from worker.engine.batches import ProbeBatches
from worker.engine.probe import FirstOutput, flatten_outputs

ABSOLUTE_TOLERANCE = 1e-4
SENSITIVITY_FACTOR = 10.0


def onnxruntime_outputs(path: Path, inputs: dict[str, torch.Tensor]) -> tuple[list[np.ndarray] | None, str | None]:
    """onnxruntime's outputs for the batch, read from the artifact file; (None, why) when it cannot run."""
    try:
        # From the path, so external weights resolve beside it; the session and its weights die on return.
        session = onnxruntime.InferenceSession(str(path), _one_run_options(), providers=["CPUExecutionProvider"])
        return session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()}), None
    except Exception as exc:
        return None, one_line(exc, 200)
    finally:
        session = None
        _return_freed_memory()


def _one_run_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    # Prepacking stores a second, GEMM-friendly copy of every MatMul weight: worth it over many runs, not for
    # one, where it only raises the session's peak memory (docs/engine.md).
    options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def _return_freed_memory() -> None:
    """Hand the memory onnxruntime freed back to the OS before the network's own weights are read.

    glibc keeps freed heap pages for reuse; after a session it keeps a sizeable share of the weights' size,
    which the audit's peak would then carry on top of the weights and their gradients (docs/engine.md).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (musl, macOS): nothing to trim
        return None


_LIBC = _glibc()


def parity_setup(reference: list[np.ndarray] | None, why: str | None, output_index: int,
                 torch_output: torch.Tensor, rounding_sensitivity: Callable[[], float | None] = lambda: None) -> dict:
    """The setup entries for parity; AuditError('conversion_mismatch') above tolerance."""
    if reference is None:
        return {"onnxruntime_max_abs_diff": None, "onnxruntime_tolerance": None, "onnxruntime_error": why}
    expected = np.asarray(reference[output_index])
    ours = torch_output.detach().cpu().numpy()
    if expected.shape != ours.shape:
        raise AuditError("conversion_mismatch", f"the converted network's output has shape {list(ours.shape)}, "
                                                f"onnxruntime's {list(expected.shape)}")
    diff, tolerance = max_abs_diff(ours, expected), tolerance_for(expected)
    entries = {"onnxruntime_max_abs_diff": diff, "onnxruntime_tolerance": tolerance}
    if diff <= tolerance:
        return entries
    sensitivity = rounding_sensitivity()
    if sensitivity is not None and diff <= SENSITIVITY_FACTOR * sensitivity:
        return {**entries, "float32_rounding_sensitivity": sensitivity,
                "onnxruntime_parity": "within the network's own float32 rounding sensitivity"}
    raise AuditError("conversion_mismatch", f"the converted network differs from onnxruntime by up to "
                                            f"{diff:.3g} (tolerance {tolerance:.3g}) on the audit's batch")


def parity_check(reference: tuple[list[np.ndarray] | None, str | None], first_output: FirstOutput,
                 uploaded: tuple[torch.nn.Module, ProbeBatches, str] | None) -> dict:
    """parity_setup for the probe's first output; `uploaded` is (module, batches, device) while the module still
    holds the uploaded weights (not after options.train_steps), to measure its float32 rounding sensitivity."""

    def sensitivity() -> float | None:
        if uploaded is None:
            return None
        module, batches, device = uploaded
        inputs = [tensor.to(device) for tensor in batches.inputs[0].values()]
        return float64_disagreement(module, inputs, lambda outputs: flatten_outputs(outputs)[first_output.index])

    return parity_setup(*reference, first_output.index, first_output.output, sensitivity)


def float64_disagreement(module: torch.nn.Module, inputs: list[torch.Tensor],
                         pick: Callable[[object], torch.Tensor]) -> float | None:
    """Largest |float32 output - float64 output| of the module on these inputs; None if it cannot run in float64."""
    try:
        twin = copy.deepcopy(module).double()
        with torch.no_grad():
            single = pick(module(*inputs))
            double = pick(twin(*[t.double() if t.is_floating_point() else t for t in inputs]))
        return max_abs_diff(single.cpu().numpy(), double.float().cpu().numpy())
    except Exception:
        return None


def tolerance_for(expected: np.ndarray) -> float:
    """1e-4, times the largest finite magnitude in the expected output when that exceeds 1."""
    finite = np.abs(expected[np.isfinite(expected)]) if expected.size else np.zeros(0)
    return ABSOLUTE_TOLERANCE * max(1.0, float(finite.max()) if finite.size else 1.0)


def max_abs_diff(ours: np.ndarray, expected: np.ndarray) -> float:
    """Largest |ours - expected|; equal NaN/Inf entries count as agreeing, unequal ones as infinite."""
    ours, expected = ours.astype(np.float64), expected.astype(np.float64)
    same_nonfinite = (np.isnan(ours) & np.isnan(expected)) | (np.isinf(ours) & (ours == expected))
    diff = np.where(same_nonfinite, 0.0, np.abs(ours - expected))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max()) if diff.size else 0.0
