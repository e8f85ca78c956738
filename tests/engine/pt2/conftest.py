"""Helpers of the .pt2 tests: export a network with torch.export, and rewrite a saved archive's members."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def save_pt2(network: torch.nn.Module, path: Path, example: torch.Tensor) -> Path:
    """torch.export.export in eval mode, then torch.export.save: what a user does."""
    torch.export.save(torch.export.export(network.eval(), (example,)), str(path))
    return path


def rewritten(path: Path, out: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the archive with its members (by name under the root folder) edited in place by `edit`."""
    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/")[0] + "/"
        members = {name[len(root):]: archive.read(name) for name in archive.namelist()}
    edit(members)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(root + name, data)
    return out


def edit_program(members: dict[str, bytes], change: Callable[[dict], None]) -> None:
    """Apply `change` to the program's JSON member."""
    program = json.loads(members["models/model.json"])
    change(program)
    members["models/model.json"] = json.dumps(program).encode()


@pytest.fixture
def mlp_pt2(tmp_path) -> Path:
    from tests.support.networks import mlp

    return save_pt2(mlp(), tmp_path / "mlp.pt2", torch.randn(8, 6))
