"""Read a torch.export archive (.pt2) without unpickling anything: the program is JSON, weights and tensor
constants are raw bytes described by JSON configs. torch.export.load would unpickle tensor-subclass weights and
constants (weights_only=False), Python constants (pickle.loads), and the sample inputs (falling back to
weights_only=False); here pickled tensors load with weights_only=True, Python objects are refused, and the sample
inputs are never read."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch._export.serde import schema
from torch._export.serde.serialize import (
    _dict_to_dataclass,
    deserialize_scalar_type,
    deserialize_size,
    deserialize_storage_offset,
    deserialize_stride,
)

from gradaudit.errors import AuditError, one_line

_PROGRAM = "models/{}.json"
_WEIGHTS, _CONSTANTS = "data/weights/", "data/constants/"
_CONFIGS = {_WEIGHTS: "data/weights/{}_weights_config.json", _CONSTANTS: "data/constants/{}_constants_config.json"}
_TENSOR_CONSTANT = "tensor_"  # torch's prefix for tensor constants; custom and opaque objects are pickles


@dataclass
class ArchiveContents:
    """The program's JSON (a dict, not yet deserialized), its state dict and its tensor constants."""

    program: dict
    state_dict: dict[str, torch.Tensor]
    constants: dict[str, torch.Tensor]


def read_archive(path: Path) -> ArchiveContents:
    """The program JSON, weights and constants of a .pt2 archive; AuditError('invalid_exported_program')."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _Reader(archive).contents()
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise invalid(f"not a readable torch.export archive ({one_line(exc, 200)})") from None


def invalid(detail: str) -> AuditError:
    """The error of an archive that is not a loadable exported program."""
    return AuditError("invalid_exported_program", detail)


class _Reader:
    def __init__(self, archive: zipfile.ZipFile):
        self._archive = archive
        self._root = archive_root(archive.namelist())
        if self._root is None:
            raise invalid("not a torch.export archive (torch.export.save): no archive_format member")

    def contents(self) -> ArchiveContents:
        if self._root + "byteorder" in self._archive.namelist() and self._read("byteorder") != b"little":
            raise invalid("the archive was written on a big-endian machine")
        name = self._program_name()
        return ArchiveContents(
            program=json.loads(self._read(_PROGRAM.format(name))),
            state_dict=self._payloads(name, _WEIGHTS),
            constants=self._payloads(name, _CONSTANTS),
        )

    def _program_name(self) -> str:
        prefix = self._root + "models/"
        names = [n[len(prefix):-len(".json")] for n in self._archive.namelist()
                 if n.startswith(prefix) and n.endswith(".json") and "/" not in n[len(prefix):]]
        if "model" in names:
            return "model"  # what torch.export.save writes and torch.export.load returns
        if len(names) != 1:
            raise invalid(f"the archive holds {len(names)} programs; expected one")
        return names[0]

    def _read(self, member: str) -> bytes:
        info = self._archive.getinfo(self._root + member)
        if info.compress_type != zipfile.ZIP_STORED:
            raise invalid(f"member {member} is compressed; torch.export.save stores members uncompressed")
        return self._archive.read(info)

    def _payloads(self, name: str, folder: str) -> dict[str, torch.Tensor]:
        config_member = _CONFIGS[folder].format(name)
        if self._root + config_member not in self._archive.namelist():
            return {}
        config = _dict_to_dataclass(schema.PayloadConfig, json.loads(self._read(config_member)))
        return {fqn: self._payload(folder, meta) for fqn, meta in config.config.items()}

    def _payload(self, folder: str, meta) -> torch.Tensor:
        if folder == _CONSTANTS and not meta.path_name.startswith(_TENSOR_CONSTANT):
            raise invalid(f"the archive holds a pickled Python object ({meta.path_name}); pickles are never loaded")
        data = self._read(folder + meta.path_name)
        if meta.use_pickle:
            return _pickled_tensor(data, meta.path_name)
        return _raw_tensor(data, meta)


def archive_root(names: list[str]) -> str | None:
    """The folder every member of a torch.export archive lives in ('net/'), or None if it is not one."""
    roots = {name[: -len("archive_format")] for name in names if name.endswith("archive_format")}
    return next((root for root in roots if root.count("/") == 1), None)


def _pickled_tensor(data: bytes, member: str) -> torch.Tensor:
    # A tensor subclass is saved with torch.save; weights_only refuses anything but tensors and plain containers.
    try:
        value = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise invalid(f"{member} is a pickle that is not a plain tensor ({one_line(exc, 160)})") from None
    if not isinstance(value, torch.Tensor):
        raise invalid(f"{member} holds a {type(value).__name__}, not a tensor")
    return value


def _raw_tensor(data: bytes, meta) -> torch.Tensor:
    tensor_meta = meta.tensor_meta
    dtype = deserialize_scalar_type(tensor_meta.dtype)
    size = deserialize_size(tensor_meta.sizes)
    if not data:
        flat = torch.zeros(size, dtype=dtype).reshape(-1)
    else:
        flat = torch.frombuffer(bytearray(data), dtype=dtype)
    tensor = torch.as_strided(flat, size, deserialize_stride(tensor_meta.strides),
                              deserialize_storage_offset(tensor_meta.storage_offset))
    if meta.is_param:
        return torch.nn.Parameter(tensor, requires_grad=tensor_meta.requires_grad)
    return tensor
