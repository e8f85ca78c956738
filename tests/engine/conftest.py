"""Session artifacts for engine tests: the healthy MLP saved once as TorchScript and as ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.networks import export_onnx, mlp, save_torchscript


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """A folder shared by the session's exported artifacts."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def mlp_script(artifacts) -> Path:
    """The healthy MLP, scripted."""
    return save_torchscript(mlp(), artifacts / "mlp.pt")


@pytest.fixture(scope="session")
def mlp_onnx(artifacts) -> Path:
    """The healthy MLP, legacy ONNX export at opset 13 with a dynamic batch dimension."""
    return export_onnx(mlp(), torch.randn(2, 6), artifacts / "mlp.onnx", dynamic={0: "batch"})
