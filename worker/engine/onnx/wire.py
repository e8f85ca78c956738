"""Read an ONNX file's graph while leaving its weights' bytes in the file; write one initializer at a time.

Protobuf parses a file whole and frees a parsed message's memory only with the whole message, so a parsed
network and the tensors converted from it would hold the weights twice. Instead the file is walked at
the protobuf wire level, through the three messages that lead to weights (model, graph, initializer), and each
initializer's raw bytes are skipped: the parsed graph gets the ONNX spec's external-data reference to them
(location, offset, length in this same file), as if the exporter had saved them beside it. Weights embedded
in the file and weights in separate files are then read the same way, straight into tensors
(external_data.py). Writing a network held in memory (a patched copy, worker/remedies) goes the other way, one
initializer at a time (write_model).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import onnx
from google.protobuf.message import DecodeError

from gradaudit.errors import AuditError, one_line

# Smaller tensors (shapes, scalars, norm parameters) stay in the graph: skipping them would save nothing.
SMALLEST_LEFT_IN_FILE = 4096  # bytes

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _number(message, field: str) -> int:
    return message.DESCRIPTOR.fields_by_name[field].number


_GRAPH = _number(onnx.ModelProto, "graph")
_INITIALIZER = _number(onnx.GraphProto, "initializer")
_RAW_DATA = _number(onnx.TensorProto, "raw_data")
_EXTERNAL_DATA = _number(onnx.TensorProto, "external_data")
_DATA_LOCATION = _number(onnx.TensorProto, "data_location")
_KEY = _number(onnx.StringStringEntryProto, "key")
_VALUE = _number(onnx.StringStringEntryProto, "value")


class _Field(NamedTuple):
    number: int
    wire_type: int
    start: int  # of its key
    value_start: int
    end: int


class _Malformed(ValueError):
    pass


def read_without_weights(path: Path) -> onnx.ModelProto:
    """The ModelProto in path, its large initializers referring to their bytes in path by offset and length."""
    if path.stat().st_size == 0:
        raise AuditError("invalid_onnx", "not a readable ONNX file (the file is empty)")
    try:
        with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            weightless = _model(data, path.name)
        return onnx.ModelProto.FromString(bytes(weightless))
    except (_Malformed, DecodeError, OSError, ValueError) as exc:
        raise AuditError("invalid_onnx", f"not a readable ONNX file ({one_line(exc, 200)})") from None


def _model(data: mmap.mmap, file_name: str) -> bytearray:
    def initializer(tensor: _Field) -> bytes:
        return _initializer(data, tensor, file_name)

    def graph(field: _Field) -> bytearray:
        return _rewritten(data, field.value_start, field.end, _INITIALIZER, initializer)

    return _rewritten(data, 0, len(data), _GRAPH, graph)


def _rewritten(data: mmap.mmap, start: int, end: int, number: int, rewrite) -> bytearray:
    """The message in data[start:end] with each length-delimited field `number` replaced by rewrite(field)."""
    out = bytearray()
    for field in _fields(data, start, end):
        if field.number == number and field.wire_type == _LEN:
            out += _length_delimited(number, rewrite(field))
        else:
            out += data[field.start:field.end]
    return out


def _initializer(data: mmap.mmap, tensor: _Field, file_name: str) -> bytes:
    fields = list(_fields(data, tensor.value_start, tensor.end))
    raw = [f for f in fields if f.number == _RAW_DATA and f.wire_type == _LEN]
    already_external = any(f.number in (_EXTERNAL_DATA, _DATA_LOCATION) for f in fields)
    if len(raw) != 1 or already_external or raw[0].end - raw[0].value_start < SMALLEST_LEFT_IN_FILE:
        return data[tensor.value_start:tensor.end]
    kept = b"".join(data[f.start:f.end] for f in fields if f is not raw[0])
    reference = {"location": file_name, "offset": str(raw[0].value_start), "length": str(raw[0].end - raw[0].value_start)}
    entries = b"".join(_length_delimited(_EXTERNAL_DATA, _entry(key, value)) for key, value in reference.items())
    return kept + entries + _varint_field(_DATA_LOCATION, onnx.TensorProto.EXTERNAL)


def _fields(data: mmap.mmap, start: int, end: int) -> Iterator[_Field]:
    position = start
    while position < end:
        key, value_start = _varint(data, position, end)
        wire_type = key & 7
        if wire_type == _VARINT:
            value_end = _varint(data, value_start, end)[1]
        elif wire_type == _LEN:
            length, value_start = _varint(data, value_start, end)
            value_end = value_start + length
        elif wire_type in (_I64, _I32):
            value_end = value_start + (8 if wire_type == _I64 else 4)
        else:
            raise _Malformed(f"unexpected protobuf wire type {wire_type} at byte {position}")
        if value_end > end:
            raise _Malformed(f"a field at byte {position} runs past the end of its message")
        yield _Field(key >> 3, wire_type, position, value_start, value_end)
        position = value_end


def _varint(data: mmap.mmap, position: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= end or shift > 63:
            raise _Malformed(f"a truncated varint at byte {position}")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes | bytearray) -> bytes:
    return _key(number, _LEN) + _encode_varint(len(payload)) + bytes(payload)


def _varint_field(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _encode_varint(value)


def _entry(key: str, value: str) -> bytes:
    return _length_delimited(_KEY, key.encode()) + _length_delimited(_VALUE, value.encode())


def write_model(proto: onnx.ModelProto, path: Path) -> None:
    """Write proto as protobuf would, but one initializer at a time: the graph's other fields, then each
    initializer serialized alone. A parser reads the same message (fields may come in any order; the
    initializers keep theirs), and the network is never one buffer: serializing a 200 MB network whole took
    0.3-1.5 s here and held its weights a second time while it ran."""
    graph = proto.graph
    graph_head = _without(graph, "initializer").SerializeToString()
    sizes = [tensor.ByteSize() for tensor in graph.initializer]
    graph_length = len(graph_head) + sum(len(_key(_INITIALIZER, _LEN)) + len(_encode_varint(size)) + size
                                         for size in sizes)
    with open(path, "wb") as out:
        out.write(_without(proto, "graph").SerializeToString())
        out.write(_key(_GRAPH, _LEN) + _encode_varint(graph_length))
        out.write(graph_head)
        for tensor, size in zip(graph.initializer, sizes):
            out.write(_key(_INITIALIZER, _LEN) + _encode_varint(size))
            out.write(tensor.SerializeToString())


def _without(message, name: str):
    """A copy of message without the field `name` (the rest is small: the weights are what is left out)."""
    copy = type(message)()
    for field, value in message.ListFields():
        if field.name == name:
            continue
        if field.is_repeated:
            getattr(copy, field.name).extend(value)
        elif field.message_type is not None:
            getattr(copy, field.name).CopyFrom(value)
        else:
            setattr(copy, field.name, value)
    return copy


def _key(number: int, wire_type: int) -> bytes:
    return _encode_varint(number << 3 | wire_type)
