"""Whether the converted torch network computes what onnxruntime computes, on the audit's own batch.

Tolerance: 1e-4 absolute, scaled by the output's magnitude when that exceeds 1
(tolerance = 1e-4 * max(1, max |onnxruntime output|)), so float32 rounding in large logits is not a mismatch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import torch

from worker.engine.errors import AuditError, one_line

ABSOLUTE_TOLERANCE = 1e-4


def onnxruntime_outputs(path: Path, inputs: dict[str, torch.Tensor]) -> tuple[list[np.ndarray] | None, str | None]:
    """onnxruntime's outputs for the batch, read from the artifact file; (None, why) when it cannot run."""
    try:
        # From the path, so external weights resolve beside it; the session and its weights die on return.
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()}), None
    except Exception as exc:
        return None, one_line(exc, 200)


def parity_setup(reference: list[np.ndarray] | None, why: str | None, output_index: int,
                 torch_output: torch.Tensor) -> dict:
    """The setup entries for parity; AuditError('conversion_mismatch') when above tolerance."""
    if reference is None:
        return {"onnxruntime_max_abs_diff": None, "onnxruntime_tolerance": None, "onnxruntime_error": why}
    expected = np.asarray(reference[output_index])
    ours = torch_output.detach().cpu().numpy()
    if expected.shape != ours.shape:
        raise AuditError("conversion_mismatch", f"the converted network's output has shape {list(ours.shape)}, "
                                                f"onnxruntime's {list(expected.shape)}")
    diff, tolerance = max_abs_diff(ours, expected), tolerance_for(expected)
    if not diff <= tolerance:
        raise AuditError("conversion_mismatch", f"the converted network differs from onnxruntime by up to "
                                                f"{diff:.3g} (tolerance {tolerance:.3g}) on the audit's batch")
    return {"onnxruntime_max_abs_diff": diff, "onnxruntime_tolerance": tolerance}


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
