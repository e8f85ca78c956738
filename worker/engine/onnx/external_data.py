"""External weights of an ONNX network: confined to the folder its archive was extracted to, read into tensors.

A bare .onnx refers only to itself: wire.py leaves its embedded weights in the file as external references.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import onnx

from gradaudit.errors import AuditError


def external_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the graph and its subgraphs whose data lives in another file."""
    sparse = [part for tensor in graph.sparse_initializer for part in (tensor.values, tensor.indices)]
    for tensor in [*graph.initializer, *sparse]:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor
    for node in graph.node:
        for attribute in node.attribute:
            tensors = [attribute.t, *attribute.tensors] if attribute.HasField("t") else list(attribute.tensors)
            yield from (t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from external_tensors(subgraph)


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    """The tensor's external-data entries; a key given twice is refused, since readers disagree on which wins."""
    keys = [entry.key for entry in tensor.external_data]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise AuditError("external_data_unsafe",
                         f"initializer '{tensor.name}' gives its external '{repeated[0]}' more than once")
    return {entry.key: entry.value for entry in tensor.external_data}


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

    A reference to the uploaded file itself (wire.py leaves its weights there) is always allowed; folder None
    (a bare .onnx upload) allows only those.
    """
    for tensor in external_tensors(proto.graph):
        location = _entries(tensor).get("location", "")
        if location == own_file.name:
            target = own_file
        elif folder is None:
            raise AuditError(
                "external_data_missing",
                f"initializer '{tensor.name}' references the external weight file '{location}'; "
                "upload a .zip or .tar archive holding the .onnx file and its data files",
            )
        else:
            target = _confined(location, folder, tensor.name)
        _set_entry(tensor, "location", str(target.resolve()))


def read_array(tensor: onnx.TensorProto, *, transposed: bool = False) -> np.ndarray:
    """A located external tensor's values, read from its file into a new array and nowhere else.

    transposed (2-D only): the transpose, laid out contiguously, read a block of rows at a time so that no
    second full-size array exists even for a moment.
    """
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).newbyteorder("<")  # ONNX is little-endian
    shape = tuple(tensor.dims)
    path, offset, _ = _extent(tensor)
    with open(path, "rb") as stream:
        stream.seek(offset)
        if not transposed:
            return np.fromfile(stream, dtype=dtype, count=math.prod(shape)).reshape(shape)
        rows, columns = shape
        values = np.empty((columns, rows), dtype=dtype)
        block = max(1, _BLOCK_BYTES // max(1, columns * dtype.itemsize))
        for start in range(0, rows, block):
            count = min(block, rows - start)
            rows_read = np.fromfile(stream, dtype=dtype, count=count * columns).reshape(count, columns)
            values[:, start:start + count] = rows_read.T
        return values


_BLOCK_BYTES = 4 << 20


def load_into_proto(tensor: onnx.TensorProto) -> None:
    """Read a located external tensor's bytes into the tensor itself (for tensors conversion reads from the graph)."""
    path, offset, length = _extent(tensor)
    with open(path, "rb") as stream:
        stream.seek(offset)
        tensor.raw_data = stream.read(length)
    del tensor.external_data[:]
    tensor.ClearField("data_location")


def _extent(tensor: onnx.TensorProto) -> tuple[str, int, int]:
    """(path, offset, length) of a located tensor's bytes, checked against its file's size and its shape."""
    entries = _entries(tensor)
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
    expected = _size_in_bytes(tensor)
    if expected is not None and length != expected:
        raise AuditError("external_data_invalid", f"initializer '{tensor.name}' has {length} bytes in its file, "
                                                  f"its shape {list(tensor.dims)} needs {expected}")
    return path, offset, length


def _size_in_bytes(tensor: onnx.TensorProto) -> int | None:
    """What a tensor of fixed-size elements needs; None for strings and packed sub-byte types."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    if tensor.data_type in _SUB_BYTE_TYPES or tensor.data_type == onnx.TensorProto.STRING:
        return None
    return math.prod(tensor.dims) * itemsize


_SUB_BYTE_TYPES = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
                   if hasattr(onnx.TensorProto, name)}


def _set_entry(tensor: onnx.TensorProto, key: str, value: str) -> None:
    for entry in tensor.external_data:
        if entry.key == key:
            entry.value = value
            return
    tensor.external_data.add(key=key, value=value)
