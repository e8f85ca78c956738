"""Hostile TorchScript networks built in memory: file, serialization, fork and print ops, an endless loop, a huge
allocation, NaN weights, and an ordinary network that must still audit."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn


class ReadsFile(nn.Module):
    """forward adds the bytes of a file to its input."""

    def __init__(self, path: str, shared: bool = False):
        super().__init__()
        self.linear, self.path, self.shared = nn.Linear(6, 4), path, shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leaked = torch.from_file(self.path, shared=self.shared, size=6, dtype=torch.uint8).float()
        return self.linear(x + leaked)


class Saves(nn.Module):
    """forward writes its input to a file."""

    def __init__(self, path: str):
        super().__init__()
        self.linear, self.path = nn.Linear(6, 4), path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.path)
        return self.linear(x)


def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class Forks(nn.Module):
    """forward forks a task (a thread in the interpreter) and waits for it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        future = torch.jit.fork(_twice, x)
        return self.linear(torch.jit.wait(future))


class Prints(nn.Module):
    """forward prints (writes to the worker's stdout)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("hostile", x.shape)
        return self.linear(x)


class LoopsForever(nn.Module):
    """forward loops while a condition that never turns false holds."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        while bool(total.abs().sum() > -1.0):
            total = total * 0.5 + 1.0
        return self.linear(total)


class AllocatesHugely(nn.Module):
    """forward repeats its input `times` times (terabytes) with an allowlisted op."""

    def __init__(self, times: int = 1 << 36):
        super().__init__()
        self.linear, self.times = nn.Linear(6, 4), times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = x.repeat([self.times, 1])
        return self.linear(x) + big.sum()


class Plain(nn.Module):
    """Linear, ReLU, Linear: the ordinary network that proves the worker is alive."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def nan_plain() -> nn.Module:
    """Plain with every parameter NaN."""
    network = Plain()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(float("nan"))
    return network


def scripted(network: nn.Module) -> bytes:
    """torch.jit.script then torch.jit.save, in memory."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(network.eval()), buffer)
    return buffer.getvalue()


def exported(network: nn.Module) -> bytes:
    """torch.export then torch.export.save, in memory."""
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(network.eval(), (torch.zeros(2, 6),)), buffer)
    return buffer.getvalue()
