"""How far the converted torch network is from onnxruntime on the audit's own batch."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime
import torch

from worker.engine.errors import one_line


def onnxruntime_max_abs_diff(onnx_bytes: bytes, inputs: dict[str, torch.Tensor], output_index: int,
                             torch_output: torch.Tensor) -> tuple[float | None, str | None]:
    """Max |torch - onnxruntime| on the output the audit used, or (None, why) when it cannot be measured."""
    try:
        session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        feeds = {name: tensor.numpy() for name, tensor in inputs.items()}
        reference = session.run(None, feeds)[output_index]
    except Exception as exc:
        return None, one_line(exc, 200)
    ours = torch_output.detach().float().cpu().numpy()
    if np.shape(reference) != ours.shape:
        return None, f"onnxruntime output shape {list(np.shape(reference))} differs from torch {list(ours.shape)}"
    diff = np.abs(ours - np.asarray(reference, dtype=np.float32))
    finite = diff[np.isfinite(diff)]
    value = float(finite.max()) if finite.size else 0.0
    return (value, None) if math.isfinite(value) else (None, "difference is not finite")
