"""Tiny networks for engine tests, and the legacy-exporter and TorchScript savers they are written with."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class TokenNetwork(nn.Module):
    """Token ids -> Embedding -> LSTM -> Linear, the shape of a small text classifier."""

    def __init__(self, vocab: int = 50):
        super().__init__()
        self.emb = nn.Embedding(vocab, 8)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.emb(tokens))
        return self.fc(hidden[:, -1])


class TwoLayers(nn.Module):
    """Linear, ReLU, Linear; input x of width 4."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


class LogOfNegative(nn.Module):
    """A network whose forward takes the log of negative numbers, so loss and gradients are NaN."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.last = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.log(self.first(x).abs() * -1.0 - 1.0))


def mlp() -> nn.Sequential:
    """Healthy 3-layer ReLU MLP: 6 -> 16 -> 16 -> 4."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def deep_sigmoid(depth: int = 12, width: int = 32) -> nn.Sequential:
    """The textbook vanishing-gradient network: Linear+Sigmoid repeated, then a classifier."""
    torch.manual_seed(0)
    blocks = [module for _ in range(depth) for module in (nn.Linear(width, width), nn.Sigmoid())]
    return nn.Sequential(*blocks, nn.Linear(width, 5)).eval()


def cnn_bn() -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU -> Linear on 3x8x8 images."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5)).eval()


def token_network() -> TokenNetwork:
    """An Embedding+LSTM network whose input is integer token ids."""
    torch.manual_seed(0)
    return TokenNetwork().eval()


def export_onnx(network: nn.Module, example: torch.Tensor, path: Path, *, name: str = "x", opset: int = 13,
                dynamic: dict | None = None, **kwargs) -> Path:
    """Export with the legacy (TorchScript-based) exporter; dynamic maps dim index -> symbolic name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=opset, input_names=[name],
                          dynamic_axes={name: dynamic} if dynamic else None, **kwargs)
    return path


def save_torchscript(network: nn.Module, path: Path, example: torch.Tensor | None = None) -> Path:
    """torch.jit.trace when an example is given, else torch.jit.script; then torch.jit.save."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.jit.trace(network, example) if example is not None else torch.jit.script(network)
        torch.jit.save(compiled, str(path))
    return path
