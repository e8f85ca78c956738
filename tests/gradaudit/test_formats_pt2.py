"""A torch.export archive (.pt2) is told apart by content from a TorchScript archive, a torch.save checkpoint and a
user's zip of ONNX files, without torch."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from gradaudit.formats import UnsupportedFormat, sniff_format


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    stream.seek(0)
    return stream


def test_a_saved_exported_program_is_pt2():
    stream = io.BytesIO()
    torch.export.save(torch.export.export(torch.nn.Linear(3, 2).eval(), (torch.randn(2, 3),)), stream)
    assert sniff_format(stream) == "pt2"


def test_the_layout_without_the_pt2_marker_is_not_pt2():
    with pytest.raises(UnsupportedFormat):
        sniff_format(_zip({"net/archive_format": b"something", "net/models/model.json": b"{}"}))


def test_an_onnx_archive_with_a_models_folder_stays_an_onnx_archive():
    assert sniff_format(_zip({"net/models/model.json": b"{}", "net/net.onnx": b"x"})) == "onnx_archive"
