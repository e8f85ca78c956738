"""Small archives built in tests: a zip or tar of named members, and the smallest ONNX file sniffing accepts."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

ONNX_STUB = b"\x08\x07\x3a\x00"  # ir_version 7, an empty graph: enough for sniffing and extraction


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tar_of(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
