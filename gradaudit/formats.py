"""Tell an ONNX file, a TorchScript archive and a torch.export archive (.pt2) apart by content alone, without
torch or onnx.

Both checks read a few kilobytes: the API runs them on every upload, and a pickled
`torch.save` checkpoint must be refused before anything could unpickle it. Archives are judged by their member
names, read within caps (gradaudit/sniffing.py): never decompressed whole here.
"""

from __future__ import annotations

import tarfile
import zipfile
from typing import BinaryIO, Literal

from gradaudit.archives import has_onnx_member
from gradaudit.sniffing import NotAZip, TooManyMembers, tar_member_names, zip_member_names

# "onnx_archive": a .zip or .tar holding an .onnx file and its external data files.
ArtifactFormat = Literal["onnx", "torchscript", "pt2", "onnx_archive"]
# The network formats an upload may hold, as the API and the report name them.
NETWORK_FORMATS = ("onnx", "torchscript", "pt2")

# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited), from onnx.proto.
_MODEL_PROTO_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_IR_VERSION, _GRAPH = 1, 7
_MAX_FIELDS = 64


class UnsupportedFormat(ValueError):
    """The content is neither an ONNX network, a TorchScript archive nor a torch.export archive; `code` is the
    catalogued code to answer with (archive_too_large: more members than sniffing reads)."""

    def __init__(self, detail: str, code: str = "unsupported_format"):
        super().__init__(detail)
        self.detail, self.code = detail, code


def network_format(artifact_format: str) -> str:
    """The network's format as the report names it: an ONNX archive holds an ONNX network."""
    return "onnx" if artifact_format == "onnx_archive" else artifact_format


def sniff_format(stream: BinaryIO) -> ArtifactFormat:
    """Return the format of a seekable binary stream, or raise UnsupportedFormat saying why."""
    stream.seek(0)
    head = stream.read(4)
    stream.seek(0)
    if head.startswith(b"PK"):
        return _sniff_zip(stream)
    if head[:1] == b"\x80":
        raise UnsupportedFormat(
            "this is a pickled checkpoint (torch.save); pickles are never loaded. "
            "Export the network with torch.export.save, torch.jit.save or torch.onnx.export."
        )
    if _looks_like_tar(stream):
        return _sniff_tar(stream)
    if _looks_like_model_proto(stream):
        return "onnx"
    raise UnsupportedFormat(
        "expected an ONNX file (ModelProto), a TorchScript archive (torch.jit.save), "
        "a torch.export archive (.pt2, torch.export.save), "
        "or a .zip/.tar archive holding an .onnx file and its external data files"
    )


def _looks_like_tar(stream: BinaryIO) -> bool:
    head = stream.read(262)
    stream.seek(0)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def _sniff_tar(stream: BinaryIO) -> ArtifactFormat:
    try:
        names, complete = tar_member_names(stream)
    except TooManyMembers as crowded:
        raise UnsupportedFormat(f"{crowded}; an archive of one network holds far fewer", "archive_too_large") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsupportedFormat("a damaged or unsupported tar archive") from exc
    # Names past the prefix read here are the worker's to judge, as it extracts within its own limits.
    if has_onnx_member(names) or not complete:
        return "onnx_archive"
    raise UnsupportedFormat("a tar archive without an .onnx file")


def _sniff_zip(stream: BinaryIO) -> ArtifactFormat:
    try:
        names = zip_member_names(stream)
    except TooManyMembers as crowded:
        raise UnsupportedFormat(f"{crowded}; an archive of one network holds far fewer", "archive_too_large") from None
    except NotAZip as exc:
        raise UnsupportedFormat("a damaged zip archive; expected a TorchScript or torch.export archive") from exc
    if _is_exported_program(stream, names):
        return "pt2"
    # torch.jit.save writes the network's Python source under <root>/code/; torch.save does not.
    if any("/code/" in name for name in names) and any(name.endswith("/data.pkl") for name in names):
        return "torchscript"
    if any(name.endswith("/data.pkl") for name in names):
        raise UnsupportedFormat(
            "this is a torch.save checkpoint, not a TorchScript archive; pickles are never loaded. "
            "Export the network with torch.export.save, torch.jit.save or torch.onnx.export."
        )
    if has_onnx_member(names):
        return "onnx_archive"
    raise UnsupportedFormat("a zip archive that is neither a TorchScript archive nor holds an .onnx file "
                            "(nor is it a torch.export .pt2 archive)")


def _is_exported_program(stream: BinaryIO, names: list[str]) -> bool:
    """torch.export.save writes <root>/archive_format holding "pt2" and the program as <root>/models/<name>.json."""
    markers = [name for name in names if name.endswith("/archive_format") and name.count("/") == 1]
    for marker in markers:
        root = marker[: -len("archive_format")]
        if any(name.startswith(root + "models/") and name.endswith(".json") for name in names):
            try:
                with zipfile.ZipFile(stream) as archive:
                    if archive.getinfo(marker).file_size <= 16 and archive.read(marker).strip() == b"pt2":
                        return True
            except (zipfile.BadZipFile, KeyError, OSError):
                return False
            finally:
                stream.seek(0)
    return False


def _looks_like_model_proto(stream: BinaryIO) -> bool:
    """Walk the top-level protobuf fields, skipping payloads, until an ir_version and a graph are seen."""
    seen: set[int] = set()
    end = stream.seek(0, 2)
    stream.seek(0)
    for _ in range(_MAX_FIELDS):
        key = _read_varint(stream)
        if key is None:
            break
        number, wire_type = key >> 3, key & 7
        if _MODEL_PROTO_FIELDS.get(number) != wire_type:
            return False
        value = _read_varint(stream)
        if value is None:
            return False
        if wire_type == 2:
            if stream.tell() + value > end:
                return False  # a payload running past the end: a truncated upload
            stream.seek(value, 1)
        seen.add(number)
        if {_IR_VERSION, _GRAPH} <= seen:
            break
    stream.seek(0)
    return {_IR_VERSION, _GRAPH} <= seen


def _read_varint(stream: BinaryIO) -> int | None:
    result = 0
    for shift in range(0, 64, 7):
        byte = stream.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
    return None
