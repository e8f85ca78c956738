"""POST /v1/audits with a .zip or .tar archive holding an .onnx file and its external data."""

from __future__ import annotations

import io
import tarfile
import zipfile


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_zip_holding_an_onnx_file_is_queued_as_an_onnx_archive(submit, onnx_bytes):
    response = submit(_zip({"net/net.onnx": onnx_bytes, "net/net.onnx.data": b"\0" * 16}), filename="upload.bin")

    assert response.status_code == 202
    assert response.json["artifact"]["format"] == "onnx_archive"


def test_a_gzipped_tar_holding_an_onnx_file_is_queued(submit, onnx_bytes):
    response = submit(_tar({"net.onnx": onnx_bytes}), filename="net.tar.gz")

    assert response.status_code == 202
    assert response.json["artifact"]["format"] == "onnx_archive"


def test_an_archive_without_an_onnx_file_is_415(submit):
    response = submit(_zip({"weights.bin": b"\0" * 16}), filename="net.zip")

    assert response.status_code == 415
    assert response.json["code"] == "unsupported_format"
