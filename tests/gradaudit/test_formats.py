"""gradaudit.formats: ONNX and TorchScript told apart by content; pickles and junk refused."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from gradaudit.formats import UnsupportedFormat, sniff_format


@pytest.mark.parametrize(("kind", "expected"), [
    ("onnx_legacy", "onnx"),
    ("onnx_dynamo", "onnx"),
    ("torchscript_scripted", "torchscript"),
    ("torchscript_traced", "torchscript"),
])
def test_networks_are_recognised(kind, expected, exported):
    stream = io.BytesIO(exported[kind])
    assert sniff_format(stream) == expected
    assert stream.tell() == 0  # the caller stores the stream next


def test_stream_read_partway_is_sniffed_from_the_start(exported):
    stream = io.BytesIO(exported["onnx_legacy"])
    stream.read(7)
    assert sniff_format(stream) == "onnx"


@pytest.mark.parametrize("kind", ["torch_save", "torch_save_whole"])
def test_torch_save_checkpoints_are_refused(kind, exported):
    with pytest.raises(UnsupportedFormat, match="torch.save checkpoint"):
        sniff_format(io.BytesIO(exported[kind]))


def test_legacy_pickle_is_refused(exported):
    with pytest.raises(UnsupportedFormat, match="pickled checkpoint") as refused:
        sniff_format(io.BytesIO(exported["torch_save_legacy"]))
    assert "torch.jit.save or torch.onnx.export" in refused.value.detail


@pytest.mark.parametrize("content", [b"", b"\x00", b"hello world", os.urandom(4096)],
                         ids=["empty", "zero-byte", "text", "random"])
def test_junk_is_refused(content):
    with pytest.raises(UnsupportedFormat, match="expected an ONNX file"):
        sniff_format(io.BytesIO(content))


def test_random_bytes_are_refused_every_time():
    refused = 0
    for seed in range(200):
        content = bytes((seed * 7919 + i * 104729) % 251 for i in range(512))
        try:
            sniff_format(io.BytesIO(content))
        except UnsupportedFormat:
            refused += 1
    assert refused == 200


def zipped(names: list[str]) -> bytes:
    """A zip archive holding empty members with these names."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"")
    return buffer.getvalue()


@pytest.mark.parametrize("names", [["readme.txt"], ["net/code/__torch__.py"], ["weights/data.bin"], []],
                         ids=["text", "code-without-data", "other-data", "empty-zip"])
def test_zip_that_is_not_torchscript(names):
    with pytest.raises(UnsupportedFormat, match="neither a TorchScript archive nor holds an .onnx file"):
        sniff_format(io.BytesIO(zipped(names)))


def test_damaged_zip(exported):
    with pytest.raises(UnsupportedFormat, match="damaged zip"):
        sniff_format(io.BytesIO(b"PK\x03\x04" + os.urandom(200)))


def test_truncated_torchscript_is_refused(exported):
    content = exported["torchscript_scripted"]
    with pytest.raises(UnsupportedFormat):
        sniff_format(io.BytesIO(content[: len(content) // 2]))


@pytest.mark.parametrize("kind", ["onnx_legacy", "onnx_dynamo"])
@pytest.mark.parametrize("keep", [0.5, 0.9], ids=["half", "most"])
def test_truncated_onnx_is_refused(kind, keep, exported):
    # Cut inside the graph, which holds nearly every byte: its declared length overruns the file.
    content = exported[kind]
    with pytest.raises(UnsupportedFormat):
        sniff_format(io.BytesIO(content[: int(len(content) * keep)]))


@pytest.mark.parametrize("cut", [4, 12])
def test_onnx_header_alone_is_refused(cut, exported):
    with pytest.raises(UnsupportedFormat):
        sniff_format(io.BytesIO(exported["onnx_legacy"][:cut]))


def test_protobuf_that_is_not_a_model_proto():
    # Field 3 as a varint: a valid protobuf, but ModelProto's field 3 is a string.
    with pytest.raises(UnsupportedFormat):
        sniff_format(io.BytesIO(b"\x08\x07\x18\x01:\x00"))


def test_minimal_model_proto_is_onnx():
    # ir_version=7, graph=<empty>: the two fields the sniffer needs.
    assert sniff_format(io.BytesIO(b"\x08\x07:\x00")) == "onnx"
