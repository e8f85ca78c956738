"""The conversion matrix: network families x opsets x exporters x batch kinds, exported and checked.

Shared by tests/engine/onnx/test_conversion_matrix.py (a subset) and bench/conversion_matrix.py (all of it).
A case passes when the export loads through the engine's loader, every node runs as a hookable submodule,
its forward agrees with onnxruntime within 1e-4 (absolute) on a fresh batch, and a backward from the summed
output reaches every parameter.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from gradaudit.errors import one_line
from worker.engine.formats import load_network
from worker.engine.onnx.parity import max_abs_diff

OPSETS = tuple(range(13, 22))
EXPORTERS = ("legacy", "dynamo")
BATCHES = ("fixed", "dynamic")
# Exported without constant folding, so the legacy exporter keeps BatchNormalization (with training_mode from
# opset 14) instead of folding it into the convolutions.
UNFOLDED = ("bn_unfolded",)
DYNAMO_MIN_OPSET = 18
PARITY = 1e-4


class Residual(nn.Module):
    """Two Conv+BatchNorm layers around an identity shortcut, then a linear head."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return self.head(torch.relu(self.bn2(self.conv2(y)) + x).flatten(1))


class Recurrent(nn.Module):
    """A two-layer LSTM or GRU over a sequence, classifying from the last step."""

    def __init__(self, cell: type[nn.Module]):
        super().__init__()
        self.rnn, self.fc = cell(6, 12, num_layers=2, batch_first=True), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class Encoder(nn.Module):
    """One small nn.TransformerEncoderLayer, mean-pooled, then a linear head."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer(x).mean(1))


class PreActivation(nn.Module):
    """BatchNorm before the convolution (pre-activation residual block, He et al. 2016b), BatchNorm1d in the head."""

    def __init__(self):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)
        self.head, self.bn_head = nn.Linear(4 * 6 * 6, 8), nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(torch.relu(self.bn1(x)))
        y = self.conv2(torch.relu(self.bn2(y))) + x
        return self.out(torch.relu(self.bn_head(self.head(y.flatten(1)))))


def _with_bn_statistics(network: nn.Module) -> nn.Module:
    # Non-trivial running statistics, so a BatchNorm converted in train mode would be caught.
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return network.eval()


FAMILIES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)),
            (6,)),
    "cnn_bn": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(4 * 6 * 6, 5)), (3, 8, 8)),
    "residual": (Residual, (4, 6, 6)),
    "bn_unfolded": (PreActivation, (4, 6, 6)),
    "transformer": (Encoder, (5, 16)),
    "lstm": (lambda: Recurrent(nn.LSTM), (5, 6)),
    "gru": (lambda: Recurrent(nn.GRU), (5, 6)),
}


@dataclass(frozen=True)
class Case:
    """One cell of the matrix."""

    family: str
    opset: int
    exporter: str
    batch: str

    @property
    def name(self) -> str:
        """A file-safe identifier."""
        return f"{self.family}-{self.exporter}-op{self.opset}-{self.batch}"


def cases(opsets=OPSETS) -> list[Case]:
    """Every family x opset x exporter x batch kind."""
    return [Case(*c) for c in itertools.product(FAMILIES, opsets, EXPORTERS, BATCHES)]


def network_for(family: str) -> nn.Module:
    """The family's network with fixed seeded weights, in eval mode."""
    torch.manual_seed(0)
    return _with_bn_statistics(FAMILIES[family][0]())


def export(case: Case, folder: Path, *, try_down_conversion: bool = False) -> Path | str:
    """The exported file, or why the exporter could not write this case (not applicable).

    An exporter error makes a case not applicable (the legacy exporter has no attention below opset 14).
    The dynamo exporter writes opset 18 and converts down on request, keeping 18 where it cannot; a file
    whose opset is not the one asked for is not applicable. Without try_down_conversion it is not tried.
    """
    try:
        return _export(case, folder, try_down_conversion)
    except Exception as exc:
        return f"the {case.exporter} exporter refuses: {one_line(exc, 160)}"


def _export(case: Case, folder: Path, try_down_conversion: bool) -> Path | str:
    network, example = network_for(case.family), torch.randn(2, *FAMILIES[case.family][1])
    path = folder / f"{case.name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.exporter == "legacy":
            torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=case.opset,
                              input_names=["x"], dynamic_axes={"x": {0: "batch"}} if case.batch == "dynamic" else None,
                              do_constant_folding=case.family not in UNFOLDED)
            return path
        if case.opset < DYNAMO_MIN_OPSET and not try_down_conversion:
            return f"the dynamo exporter writes opset >= {DYNAMO_MIN_OPSET}"
        shapes = ({0: torch.export.Dim("batch")},) if case.batch == "dynamic" else None
        program = torch.onnx.export(network, (example,), dynamo=True, opset_version=case.opset, input_names=["x"],
                                    dynamic_shapes=shapes, verbose=False)
        program.save(str(path))
    written = _opset_of(path)
    return path if written == case.opset else f"the exporter wrote opset {written}, not {case.opset}"


def _opset_of(path: Path) -> int:
    proto = onnx.load(str(path), load_external_data=False)
    return next(imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx"))


def check(case: Case, path: Path) -> dict:
    """Load through the engine, compare with onnxruntime, run backward; the numbers, or what failed."""
    network = load_network(path)
    batch = 3 if case.batch == "dynamic" else 2
    x = torch.randn(batch, *FAMILIES[case.family][1], generator=torch.Generator().manual_seed(1))
    module = network.module
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    output = module(x)
    expected = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    diff = max_abs_diff(output.detach().numpy(), np.asarray(expected))
    output.sum().backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None]
    modules = dict(module.named_modules())
    unhookable = [n.name for n in network.nodes if not isinstance(modules.get(n.module_path), nn.Module)]
    return {"max_abs_diff": diff, "parameters": sum(p.numel() for p in module.parameters()),
            "without_grad": missing, "unhookable": unhookable, "layers": len(network.layers),
            "nodes": len(network.nodes)}
