"""ONNX networks whose weights live in external files: read only from the archive's own folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import onnx
import pytest
import torch

from gradaudit.local import audit_file
from gradaudit.options import AuditOptions
from gradaudit.settings import load_settings
from tests.engine.conftest import export_onnx, mlp
from worker.engine import audit_network
from worker.engine.errors import AuditError

OPTIONS = AuditOptions(input_shapes={"x": [4, 6]})


def _external(tmp_path: Path, location: str = "net.onnx.data") -> Path:
    """The healthy MLP saved as net.onnx with every weight in `location`."""
    plain = export_onnx(mlp(), torch.randn(4, 6), tmp_path / "plain.onnx")
    folder = tmp_path / "exported"
    folder.mkdir()
    onnx.save_model(onnx.load(str(plain)), str(folder / "net.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    return folder / "net.onnx"


def _zipped(onnx_path: Path, destination: Path, skip_data: bool = False) -> Path:
    with zipfile.ZipFile(destination, "w") as archive:
        for file in onnx_path.parent.iterdir():
            if not (skip_data and file.suffix == ".data"):
                archive.write(file, f"net/{file.name}")
    return destination


def test_an_archive_with_external_weights_audits_like_the_plain_file(tmp_path):
    archive = _zipped(_external(tmp_path), tmp_path / "net.zip")
    settings = load_settings({}, data_dir=tmp_path / "data")

    report, error = audit_file(archive, options=OPTIONS, inputs_path=None, settings=settings)
    plain = audit_network(tmp_path / "plain.onnx", options=OPTIONS, device="cpu")

    assert error is None
    assert report["network"]["format"] == "onnx"
    assert [layer["grad_norm"] for layer in report["layers"]] == pytest.approx(
        [layer.grad_norm for layer in plain.layers], rel=1e-6)


def test_a_bare_onnx_with_external_weights_asks_for_the_archive(tmp_path):
    with pytest.raises(AuditError) as refused:
        audit_network(_external(tmp_path), options=OPTIONS, device="cpu")
    assert refused.value.code == "external_data_missing"
    assert "archive" in refused.value.detail and "net.onnx.data" in refused.value.detail


def test_an_archive_missing_a_data_file_names_it(tmp_path):
    archive = _zipped(_external(tmp_path), tmp_path / "net.zip", skip_data=True)
    settings = load_settings({}, data_dir=tmp_path / "data")

    report, error = audit_file(archive, options=OPTIONS, inputs_path=None, settings=settings)

    assert report is None
    assert error[0] == "external_data_missing" and "net.onnx.data" in error[1]


def test_a_reference_outside_the_folder_is_refused(tmp_path):
    onnx_path = _external(tmp_path)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../plain.onnx"
    onnx.save_model(proto, str(onnx_path))

    with pytest.raises(AuditError) as refused:
        audit_network(onnx_path, options=OPTIONS, device="cpu", external_data_dir=onnx_path.parent)
    assert refused.value.code == "external_data_unsafe"


def test_a_reference_past_the_end_of_its_file_is_invalid(tmp_path):
    onnx_path = _external(tmp_path)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    last = proto.graph.initializer[-1]
    for entry in last.external_data:
        if entry.key == "offset":
            entry.value = str(int(entry.value) + 4)
    onnx.save_model(proto, str(onnx_path))

    with pytest.raises(AuditError) as refused:
        audit_network(onnx_path, options=OPTIONS, device="cpu", external_data_dir=onnx_path.parent)
    assert refused.value.code == "external_data_invalid" and last.name in refused.value.detail
