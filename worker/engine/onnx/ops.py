"""Our own modules for ONNX ops whose weights we hand over as parameters (Conv, ConvTranspose, Gemm, MatMul by a
weight matrix, Gather from a table), and for Range and pools onnx2pytorch gets wrong.

onnx2pytorch builds nn.Conv2d/nn.Linear from initializers at conversion time; when a weight is a graph
input or computed (backend node tests, weight-sharing exports) it fails. These modules take every input at
run time, following the ONNX operator spec.
"""

from __future__ import annotations

import math

import onnx
import torch
import torch.nn.functional as F

from worker.engine.onnx.recurrent import Recurrent, RecurrentOutput

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values (strings decoded)."""
    return {a.name: _decoded(onnx.helper.get_attribute_value(a)) for a in node.attribute}


def _decoded(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


class Gemm(torch.nn.Module):
    """Y = alpha * A' @ B' + beta * C, A' and B' optionally transposed."""

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0, broadcast: int = 0):
        # broadcast (opsets before 7) allowed C to broadcast, which torch's addition always does.
        super().__init__()
        self.alpha, self.beta, self.trans_a, self.trans_b = alpha, beta, transA, transB

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        a = a.t() if self.trans_a else a
        b = b.t() if self.trans_b else b
        y = self.alpha * (a @ b)
        return y if c is None else y + self.beta * c


class Linear(torch.nn.Module):
    """ONNX MatMul by a weight matrix, plus the bias of an Add folded into it; the weight stored (out, in)."""

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return torch.nn.functional.linear(x, weight, bias)


class Gather(torch.nn.Module):
    """ONNX Gather of a table read as a parameter (an embedding): the entries of data at indices along axis,
    negative indices counting from the end."""

    def __init__(self, axis: int = 0):
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        axis = self.axis % data.dim()
        flat = indices.reshape(-1).long()
        flat = torch.where(flat < 0, flat + data.shape[axis], flat)
        picked = data.index_select(axis, flat)
        return picked.reshape(data.shape[:axis] + indices.shape + data.shape[axis + 1:])


class Conv(torch.nn.Module):
    """ONNX Conv with weight (and bias) as inputs: strides, dilations, group, pads or auto_pad."""

    def __init__(self, strides=None, dilations=None, group: int = 1, pads=None, auto_pad: str = "NOTSET",
                 kernel_shape=None):
        super().__init__()
        self.strides, self.dilations, self.group = strides, dilations, group
        self.pads, self.auto_pad = pads, auto_pad

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        rank = weight.dim() - 2
        strides, dilations = self.strides or [1] * rank, self.dilations or [1] * rank
        kernel = weight.shape[2:]
        pads = self._pads(x.shape[2:], kernel, strides, dilations)
        begins, ends = pads[:rank], pads[rank:]
        if begins != ends:  # torch pads both sides alike; only uneven pads need a padded copy of the input
            x, begins = F.pad(x, _torch_pad_order(pads)), [0] * rank
        return _CONV[rank](x, weight, bias, stride=strides, padding=begins, dilation=dilations, groups=self.group)

    def _pads(self, sizes, kernel, strides, dilations) -> list[int]:
        rank = len(sizes)
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            totals = [max(0, (math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n)
                      for n, k, s, d in zip(sizes, kernel, strides, dilations)]
            return _split_total(totals, upper=self.auto_pad == "SAME_UPPER")
        if self.auto_pad == "VALID":
            return [0] * (2 * rank)
        return list(self.pads or [0] * (2 * rank))


class ConvTranspose(torch.nn.Module):
    """ONNX ConvTranspose with weight (and bias) as inputs, computed unpadded then cropped to the spec's shape."""

    def __init__(self, strides=None, dilations=None, group: int = 1, pads=None, auto_pad: str = "NOTSET",
                 output_padding=None, output_shape=None, kernel_shape=None):
        super().__init__()
        self.strides, self.dilations, self.group = strides, dilations, group
        self.pads, self.auto_pad = pads, auto_pad
        self.output_padding, self.output_shape = output_padding, output_shape

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        rank = weight.dim() - 2
        strides, dilations = self.strides or [1] * rank, self.dilations or [1] * rank
        full = _CONV_TRANSPOSE[rank](x, weight, None, stride=strides, dilation=dilations, groups=self.group)
        extra = self.output_padding or [0] * rank
        pads = self._pads(x.shape[2:], weight.shape[2:], strides, dilations, extra)
        # Unpadded output, plus output_padding zeros at the end, minus pads on each side.
        crop = [p for i in reversed(range(rank)) for p in (-pads[i], extra[i] - pads[rank + i])]
        y = F.pad(full, crop)
        return y if bias is None else y + bias.reshape(1, -1, *[1] * rank)

    def _pads(self, sizes, kernel, strides, dilations, extra) -> list[int]:
        rank = len(sizes)
        target = self.output_shape
        if target is None and self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = [n * s for n, s in zip(sizes, strides)]
        if target is None:
            return list(self.pads or [0] * (2 * rank))
        target = list(target)[-rank:]
        totals = [s * (n - 1) + e + (k - 1) * d + 1 - t
                  for n, k, s, d, e, t in zip(sizes, kernel, strides, dilations, extra, target)]
        return _split_total(totals, upper=self.auto_pad == "SAME_UPPER")


def _split_total(totals: list[int], *, upper: bool) -> list[int]:
    """ONNX pads [begins..., ends...] from total padding; SAME_UPPER puts the odd one at the end."""
    small = [t // 2 for t in totals]
    large = [t - t // 2 for t in totals]
    return small + large if upper else large + small


def _torch_pad_order(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] -> F.pad's (b_last, e_last, ..., b1, e1)."""
    rank = len(pads) // 2
    return [p for i in reversed(range(rank)) for p in (pads[i], pads[rank + i])]


class Pool(torch.nn.Module):
    """ONNX AveragePool, MaxPool (values only) and LpPool with any pads, dilations and ceil_mode.

    torch's pooling refuses pads over half the kernel and dilated average pooling; here the input is
    padded explicitly and each window gathered with Tensor.unfold.
    """

    def __init__(self, op_type: str, kernel_shape, strides=None, dilations=None, pads=None, auto_pad="NOTSET",
                 ceil_mode: int = 0, count_include_pad: int = 0, p: int = 2, storage_order: int = 0):
        super().__init__()
        self.op_type, self.kernel, self.ceil_mode = op_type, list(kernel_shape), ceil_mode
        rank = len(self.kernel)
        self.strides, self.dilations = list(strides or [1] * rank), list(dilations or [1] * rank)
        self.pads, self.auto_pad, self.count_include_pad, self.p = pads, auto_pad, count_include_pad, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank, dims = len(self.kernel), tuple(range(-len(self.kernel), 0))
        spans = [(k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations)]
        pads, extra = _pool_pads(self, x.shape[2:], spans)
        padded = pads[:rank] + [e + c for e, c in zip(pads[rank:], extra)]
        fill = float("-inf") if self.op_type == "MaxPool" else 0.0
        windows = self._windows(F.pad(x, _torch_pad_order(padded), value=fill), spans)
        if self.op_type == "MaxPool":
            return windows.amax(dim=dims)
        if self.op_type == "LpPool":
            return windows.abs().pow(self.p).sum(dim=dims).pow(1.0 / self.p)
        # Declared pads count when count_include_pad says so; the ceil_mode overhang never does.
        counted = F.pad(torch.ones_like(x[:1, :1]), _torch_pad_order(pads), value=float(self.count_include_pad))
        counted = F.pad(counted, _torch_pad_order([0] * rank + extra))
        return windows.sum(dim=dims) / self._windows(counted, spans).sum(dim=dims)

    def _windows(self, x: torch.Tensor, spans: list[int]) -> torch.Tensor:
        for axis, (span, stride, dilation) in enumerate(zip(spans, self.strides, self.dilations)):
            x = x.unfold(2 + axis, span, stride)[..., ::dilation]
        return x


def _pool_pads(pool: Pool, sizes, spans: list[int]) -> tuple[list[int], list[int]]:
    """ONNX pads [begins..., ends...], and the overhang ceil_mode adds at each end for the last window."""
    rank = len(spans)
    if pool.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max(0, (math.ceil(n / s) - 1) * s + k - n) for n, k, s in zip(sizes, spans, pool.strides)]
        return _split_total(totals, upper=pool.auto_pad == "SAME_UPPER"), [0] * rank
    pads = list(pool.pads or [0] * (2 * rank)) if pool.auto_pad != "VALID" else [0] * (2 * rank)
    extra = [0] * rank
    if pool.ceil_mode:
        for i, (n, k, s) in enumerate(zip(sizes, spans, pool.strides)):
            padded = n + pads[i] + pads[rank + i]
            last_start = math.ceil(max(0, padded - k) / s) * s
            if last_start >= n + pads[i]:  # a window may not start in the end padding (torch and ONNX agree)
                last_start -= s
            extra[i] = max(0, last_start + k - padded)
    return pads, extra


class Range(torch.nn.Module):
    """ONNX Range from 0-d tensors: start, start + delta, ... up to limit (exclusive)."""

    def forward(self, start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


def runtime_module(node: onnx.NodeProto) -> torch.nn.Module:
    """Our module for a node held out of onnx2pytorch's conversion."""
    if node.op_type in ("LSTM", "GRU", "RNN"):
        return Recurrent(node.op_type, **attributes(node))
    if node.op_type == "RecurrentOutput":
        return RecurrentOutput(**attributes(node))
    if node.op_type in ("AveragePool", "MaxPool", "LpPool"):
        return Pool(node.op_type, **attributes(node))
    return {"Gemm": Gemm, "MatMul": Linear, "Gather": Gather, "Conv": Conv, "ConvTranspose": ConvTranspose,
            "Range": Range}[node.op_type](**attributes(node))
