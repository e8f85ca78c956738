"""Networks exported every way a user might, built once per session (export is the slow part)."""

from __future__ import annotations

import io
import warnings

import pytest


def _tiny_network():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()


def _saved(write) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def exported() -> dict[str, bytes]:
    """The same tiny network as ONNX (legacy and dynamo), TorchScript (scripted, traced), torch.save."""
    import torch

    net, example = _tiny_network(), (torch.zeros(1, 4),)
    return {
        "onnx_legacy": _saved(lambda f: torch.onnx.export(net, example, f, dynamo=False)),
        "onnx_dynamo": _saved(lambda f: torch.onnx.export(net, example, f, dynamo=True, verbose=False)),
        "torchscript_scripted": _saved(lambda f: torch.jit.save(torch.jit.script(net), f)),
        "torchscript_traced": _saved(lambda f: torch.jit.save(torch.jit.trace(net, example), f)),
        "torch_save": _saved(lambda f: torch.save(net.state_dict(), f)),
        "torch_save_legacy": _saved(lambda f: torch.save(net.state_dict(), f, _use_new_zipfile_serialization=False)),
        "torch_save_whole": _saved(lambda f: torch.save(net, f)),
    }
