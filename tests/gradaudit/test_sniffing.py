"""Format sniffing reads a bounded part of an archive: a central directory within a member cap, a tar.gz's prefix."""

from __future__ import annotations

import io
import resource
import tarfile
import time
import zipfile

import pytest

from gradaudit.formats import UnsupportedFormat, sniff_format
from gradaudit.sniffing import MAX_SNIFFED_MEMBERS, zip_member_names
from suites.bombs import GIB, many_member_tar, many_member_zip, tar_gz_bomb


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sniffed_quickly(content: bytes) -> str | UnsupportedFormat:
    """The sniffed format (or the refusal), asserting it took well under a second's work and little memory."""
    peak, started = _peak_rss_mb(), time.monotonic()
    try:
        result = sniff_format(io.BytesIO(content))
    except UnsupportedFormat as refused:
        result = refused
    assert time.monotonic() - started < 2  # generous: ~0.03 s on an idle core
    assert _peak_rss_mb() - peak < 64
    return result


def test_a_tar_gz_bomb_is_not_decompressed_by_the_sniffer():
    bomb = tar_gz_bomb(declared=10 * GIB)  # 10 MB on the wire, 10 GiB of zeros inside
    assert _sniffed_quickly(bomb) == "onnx_archive"  # undecided past the prefix: the worker judges it


def test_a_tar_gz_without_an_onnx_file_read_whole_is_refused():
    small = tar_gz_bomb(declared=1024, then_onnx=False)
    refused = _sniffed_quickly(small)
    assert isinstance(refused, UnsupportedFormat) and "without an .onnx file" in refused.detail


def test_a_200k_member_zip_is_refused_from_its_directory_size():
    refused = _sniffed_quickly(many_member_zip(200_000))
    assert isinstance(refused, UnsupportedFormat) and refused.code == "archive_too_large"


def test_a_zip_over_the_member_cap_with_a_small_directory_is_refused():
    refused = _sniffed_quickly(many_member_zip(MAX_SNIFFED_MEMBERS + 1, name_width=1))
    assert isinstance(refused, UnsupportedFormat) and refused.code == "archive_too_large"
    assert str(MAX_SNIFFED_MEMBERS) in refused.detail


def test_a_tar_over_the_member_cap_is_refused():
    refused = _sniffed_quickly(many_member_tar(MAX_SNIFFED_MEMBERS + 1))
    assert isinstance(refused, UnsupportedFormat) and refused.code == "archive_too_large"


def test_member_names_agree_with_zipfile(exported):
    for kind in ("torchscript_scripted", "torch_save"):
        content = exported[kind]
        assert zip_member_names(io.BytesIO(content)) == zipfile.ZipFile(io.BytesIO(content)).namelist()


def test_a_zip_with_a_comment_and_prepended_bytes_is_read():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("net.onnx", b"x")
        archive.comment = b"c" * 1000
    assert zip_member_names(io.BytesIO(b"junk" + buffer.getvalue())) == ["net.onnx"]


@pytest.mark.parametrize("cut", [28, 30])
def test_a_damaged_central_directory_is_unsupported(cut):
    content = bytearray(many_member_zip(3))
    directory = content.find(b"PK\x01\x02")
    content[directory + cut: directory + cut + 2] = b"\xff\xff"  # a name or extra field past the directory's end
    refused = _sniffed_quickly(bytes(content))
    assert isinstance(refused, UnsupportedFormat) and "damaged zip" in refused.detail


def test_a_plain_tar_is_sniffed_by_its_headers():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        big = tarfile.TarInfo("net.onnx.data")
        big.size = 4 * 1024 * 1024
        archive.addfile(big, io.BytesIO(bytes(big.size)))
        archive.addfile(tarfile.TarInfo("net.onnx"), io.BytesIO(b""))
    assert _sniffed_quickly(buffer.getvalue()) == "onnx_archive"
