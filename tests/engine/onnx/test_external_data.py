"""ONNX networks whose weights live in external files: read only from the archive's own folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cli.local import audit_file
from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from gradaudit.settings import load_settings
from tests.support.networks import export_onnx, mlp
from worker.engine.audit import audit_network
from worker.engine.onnx import load_network as load_onnx

OPTIONS = AuditOptions(input_shapes={"x": [4, 6]})


def _external(tmp_path: Path, location: str = "net.onnx.data") -> Path:
    """The healthy MLP saved as net.onnx with every weight in `location`."""
    plain = export_onnx(mlp(), torch.randn(4, 6), tmp_path / "plain.onnx")
    folder = tmp_path / "exported"
    folder.mkdir()
    onnx.save_model(onnx.load(str(plain)), str(folder / "net.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    return folder / "net.onnx"


def _pointing_outside(tmp_path: Path) -> Path:
    """net.onnx whose weights claim to live in ../plain.onnx, outside its folder."""
    onnx_path = _external(tmp_path)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../plain.onnx"
    onnx.save_model(proto, str(onnx_path))
    return onnx_path


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


def test_gradaudit_audit_reads_a_bare_onnx_s_data_from_its_own_folder(tmp_path):
    settings = load_settings({}, data_dir=tmp_path / "data")
    report, error = audit_file(_external(tmp_path), options=OPTIONS, inputs_path=None, settings=settings)
    plain = audit_network(tmp_path / "plain.onnx", options=OPTIONS, device="cpu")
    assert error is None
    assert [layer["grad_norm"] for layer in report["layers"]] == pytest.approx(
        [layer.grad_norm for layer in plain.layers], rel=1e-6)


def test_gradaudit_audit_reads_nothing_outside_the_onnx_s_folder(tmp_path):
    onnx_path = _pointing_outside(tmp_path)
    settings = load_settings({}, data_dir=tmp_path / "data")
    report, error = audit_file(onnx_path, options=OPTIONS, inputs_path=None, settings=settings)
    assert report is None and error[0] == "external_data_unsafe"


def test_an_archive_missing_a_data_file_names_it(tmp_path):
    archive = _zipped(_external(tmp_path), tmp_path / "net.zip", skip_data=True)
    settings = load_settings({}, data_dir=tmp_path / "data")

    report, error = audit_file(archive, options=OPTIONS, inputs_path=None, settings=settings)

    assert report is None
    assert error[0] == "external_data_missing" and "net.onnx.data" in error[1]


def test_a_reference_outside_the_folder_is_refused(tmp_path):
    onnx_path = _pointing_outside(tmp_path)

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


def test_a_location_given_twice_is_refused(tmp_path):
    # Readers disagree on which of two locations wins: the confined one or the other.
    onnx_path = _external(tmp_path)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    proto.graph.initializer[0].external_data.add(key="location", value="/etc/hostname")
    onnx.save_model(proto, str(onnx_path))

    with pytest.raises(AuditError) as refused:
        audit_network(onnx_path, options=OPTIONS, device="cpu", external_data_dir=onnx_path.parent)
    assert refused.value.code == "external_data_unsafe" and "more than once" in refused.value.detail


def test_external_tensors_inside_a_subgraph_are_read_from_the_archive(tmp_path):
    values = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    info = onnx.helper.make_tensor_value_info
    branch = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w_then"], ["y_then"])], "then", [],
                                    [info("y_then", onnx.TensorProto.FLOAT, [2, 3])],
                                    [onnx.numpy_helper.from_array(values, "w_then")])
    other = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y_else"])], "else", [],
                                   [info("y_else", onnx.TensorProto.FLOAT, [2, 3])])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)], "g",
        [info("x", onnx.TensorProto.FLOAT, [2, 4]), info("c", onnx.TensorProto.BOOL, [])],
        [info("y", onnx.TensorProto.FLOAT, [2, 3])], [onnx.numpy_helper.from_array(values, "w")])
    folder = tmp_path / "net"
    folder.mkdir()
    onnx.save_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]),
                    str(folder / "net.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)

    network = load_onnx(folder / "net.onnx", folder)

    x = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(network.module(x, torch.tensor(True)), x @ torch.from_numpy(values))


def test_a_bare_onnx_reached_through_a_link_reads_its_own_weights(tmp_path):
    wide = torch.nn.Sequential(torch.nn.Linear(6, 256), torch.nn.ReLU(), torch.nn.Linear(256, 3))
    plain = export_onnx(wide, torch.randn(4, 6), tmp_path / "plain.onnx")  # weights over SMALLEST_LEFT_IN_FILE
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "net.onnx").symlink_to(plain)

    result = audit_network(tmp_path / "linked" / "net.onnx", options=OPTIONS, device="cpu")

    assert result.network["format"] == "onnx"


def test_gradaudit_audit_takes_paths_relative_to_the_working_directory(tmp_path, monkeypatch):
    # The sandboxed child runs in its own scratch folder, where a relative path names nothing.
    export_onnx(mlp(), torch.randn(4, 6), tmp_path / "net.onnx")
    monkeypatch.chdir(tmp_path)
    report, error = audit_file(Path("net.onnx"), options=OPTIONS, inputs_path=None,
                               settings=load_settings({}, data_dir=tmp_path / "data"))
    assert error is None and report["layers"]
