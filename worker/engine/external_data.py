"""External weights of an ONNX network: confined to the folder its archive was extracted to, read into tensors.

A bare .onnx refers only to itself: onnx_wire leaves its embedded weights in the file as external references.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import onnx

from worker.engine.errors import AuditError


def external_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the graph and its subgraphs whose data lives in another file."""
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor
    for node in graph.node:
        for attribute in node.attribute:
            tensors = [attribute.t, *attribute.tensors] if attribute.HasField("t") else list(attribute.tensors)
            yield from (t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from external_tensors(subgraph)


def _location(tensor: onnx.TensorProto) -> str:
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), "")


def _confined(location: str, folder: Path, tensor_name: str) -> Path:
    relative = PurePosixPath(location.replace("\\", "/"))
    if not location or relative.is_absolute() or ".." in relative.parts:
        raise AuditError("external_data_unsafe",
                         f"initializer '{tensor_name}' points outside the archive: {location!r}")
    target = folder / relative
    if target.is_symlink() or not target.resolve().is_relative_to(folder.resolve()):
        raise AuditError("external_data_unsafe", f"initializer '{tensor_name}' points through a link: {location!r}")
    if not target.is_file():
        raise AuditError("external_data_missing",
                         f"initializer '{tensor_name}' needs the file '{location}', which the archive does not hold")
    return target


def locate_external_data(proto: onnx.ModelProto, folder: Path | None, own_file: Path) -> None:
    """Point every external reference at its file's absolute path, once it is confined to `folder`.

    folder None: a bare .onnx upload, which may refer only to itself (onnx_wire leaves its weights there).
    """
    for tensor in external_tensors(proto.graph):
        location = _location(tensor)
        if folder is None and location != own_file.name:
            raise AuditError(
                "external_data_missing",
                f"initializer '{tensor.name}' references the external weight file '{location}'; "
                "upload a .zip or .tar archive holding the .onnx file and its data files",
            )
        target = _confined(location, folder or own_file.parent, tensor.name)
        _set_entry(tensor, "location", str(target.resolve()))


def read_array(tensor: onnx.TensorProto) -> np.ndarray:
    """A located external tensor's values, read from its file into a new array and nowhere else."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    count = math.prod(tensor.dims)
    path, offset, length = _extent(tensor)
    if length != count * dtype.itemsize:
        raise AuditError("external_data_invalid", f"initializer '{tensor.name}' has {length} bytes in its file, "
                                                  f"its shape {list(tensor.dims)} needs {count * dtype.itemsize}")
    with open(path, "rb") as stream:
        stream.seek(offset)
        values = np.fromfile(stream, dtype=dtype.newbyteorder("<"), count=count)  # ONNX stores little-endian
    return values.astype(dtype, copy=False).reshape(tuple(tensor.dims))


def load_into_proto(tensor: onnx.TensorProto) -> None:
    """Read a located external tensor's bytes into the tensor itself (for tensors conversion reads from the graph)."""
    path, offset, length = _extent(tensor)
    with open(path, "rb") as stream:
        stream.seek(offset)
        tensor.raw_data = stream.read(length)
    del tensor.external_data[:]
    tensor.ClearField("data_location")


def _extent(tensor: onnx.TensorProto) -> tuple[str, int, int]:
    """(path, offset, length) of a located tensor's bytes, checked against its file's size."""
    entries = {entry.key: entry.value for entry in tensor.external_data}
    path = entries["location"]
    size = Path(path).stat().st_size
    try:
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else size - offset
    except ValueError:
        raise AuditError("external_data_invalid", f"initializer '{tensor.name}' has a non-numeric offset or "
                                                  "length") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise AuditError("external_data_invalid", f"initializer '{tensor.name}' reads bytes {offset}..{offset + length} "
                                                  f"of '{Path(path).name}', which holds {size}")
    return path, offset, length


def _set_entry(tensor: onnx.TensorProto, key: str, value: str) -> None:
    for entry in tensor.external_data:
        if entry.key == key:
            entry.value = value
            return
    tensor.external_data.add(key=key, value=value)
