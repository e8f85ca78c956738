"""Hostile upload bytes built in memory: garbage, truncations, polyglots, malicious pickles and archives."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile

from suites.hostile_onnx import plain_onnx


class Opens:
    """A pickle whose `__reduce__` creates a marker file: if the marker exists, something unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Runs:
    """A pickle whose `__reduce__` runs a shell command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(marker: str) -> bytes:
    """A bare pickle that writes `marker` when loaded."""
    return pickle.dumps(Opens(marker), protocol=2)


def torchscript_shaped_zip(marker: str, code: bool = True) -> bytes:
    """A zip laid out like torch.jit.save's (data.pkl, constants.pkl, code/) whose pickles write `marker`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Runs(marker), protocol=2))
        archive.writestr("archive/constants.pkl", pickle.dumps(Opens(marker), protocol=2))
        archive.writestr("archive/version", "6\n")
        if code:
            archive.writestr("archive/code/__torch__.py", "import os\nos.system('true')\n")
    return buffer.getvalue()


def legacy_torch_save(marker: str) -> bytes:
    """torch.save's zip layout (data.pkl, byteorder) holding a pickle that writes `marker`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Opens(marker), protocol=2))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def pt2_shaped_zip(marker: str) -> bytes:
    """A zip laid out like a torch.export .pt2 whose weights and constants are malicious pickles."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("net/archive_format", "pt2")
        archive.writestr("net/version", "0.1")
        archive.writestr("net/models/model.json", "{\"graph_module\": {}}")
        archive.writestr("net/data/weights/model_weights_config.json", "{}")
        archive.writestr("net/data/weights/weight_0", pickle.dumps(Opens(marker), protocol=2))
        archive.writestr("net/data/constants/constant_0", pickle.dumps(Runs(marker), protocol=2))
    return buffer.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` of the bytes, as an interrupted upload."""
    return data[: max(1, int(len(data) * keep))]


def polyglot_zip_after(prefix: bytes, marker: str) -> bytes:
    """`prefix` followed by a TorchScript-shaped zip: both a valid something-else and, at the end, a zip."""
    return prefix + torchscript_shaped_zip(marker)


def png_header() -> bytes:
    """The start of a PNG image."""
    return b"\x89PNG\r\n\x1a\n" + bytes(13) + b"IEND\xaeB`\x82"


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def tar_with(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", compress: bool = True) -> bytes:
    """A .tar(.gz) of a plain .onnx and one hostile member (a traversal name, a link, a device, a fifo)."""
    data = plain_onnx() if kind == tarfile.REGTYPE else None
    return _tar([(_member("net.onnx"), plain_onnx()), (_member(name, kind, link), data)], compress)


def tar_link_as_network(target: str, hard: bool = False) -> bytes:
    """A .tar.gz whose only .onnx member is a link to `target`."""
    return _tar([(_member("net.onnx", tarfile.LNKTYPE if hard else tarfile.SYMTYPE, target), None)], True)


def tar_of_network(network: bytes, weights: bytes | None = None) -> bytes:
    """A .tar.gz of net.onnx (and weights.bin if given): the upload whose external references are confined."""
    members = [(_member("net.onnx"), network)] + ([(_member("weights.bin"), weights)] if weights is not None else [])
    return _tar(members, True)


def zip_with(name: str) -> bytes:
    """A zip of a plain .onnx and a member named `name` (a traversal or absolute name)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("net.onnx", plain_onnx())
        archive.writestr(name, b"x")
    return buffer.getvalue()


def zip_deflate_bomb(declared_mb: int = 256) -> bytes:
    """A zip whose .onnx-adjacent member inflates from kilobytes to `declared_mb` MB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("net.onnx", plain_onnx())
        with archive.open("weights.bin", "w", force_zip64=True) as member:
            block = bytes(16 * 1024 * 1024)
            for _ in range(declared_mb // 16):
                member.write(block)
    return buffer.getvalue()


def tar_without_network() -> bytes:
    """A .tar.gz of a text file only."""
    return _tar([(_member("README"), b"nothing here")], True)


def npz_with_pickled_object(marker: str) -> bytes:
    """An .npz whose array 'x' is an object array: loading it with allow_pickle would write `marker`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
        header = header + b" " * (63 - (10 + len(header)) % 64) + b"\n"
        body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
        archive.writestr("x.npy", body + pickle.dumps([Opens(marker)], protocol=2))
    return buffer.getvalue()


def npz_of(name: str, shape: tuple[int, ...]) -> bytes:
    """An .npz of one float32 array of zeros."""
    import numpy

    buffer = io.BytesIO()
    numpy.savez(buffer, **{name: numpy.zeros(shape, dtype=numpy.float32)})
    return buffer.getvalue()


def npz_declaring(name: str, shape: tuple[int, ...]) -> bytes:
    """An .npz whose array header declares `shape` but holds 16 bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
        header = header + b" " * (63 - (10 + len(header)) % 64) + b"\n"
        archive.writestr(f"{name}.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(16))
    return buffer.getvalue()
