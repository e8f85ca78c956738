"""Archive bombs are refused by the worker's extraction with coded failures, quickly: ratio, member count and
declared-size lies."""

from __future__ import annotations

import struct
import time
import zipfile
from pathlib import Path

import pytest

from gradaudit import archives
from gradaudit.archives import ArchiveRefused, extract_onnx_archive
from suites.bombs import GIB, tar_gz_bomb
from tests.support.archive_files import ONNX_STUB, tar_of, zip_of

MAX_TOTAL = 4 * GIB  # the default GRADAUDIT_MAX_EXTRACTED_MB


def _refused(path: Path, tmp_path: Path, **limits) -> ArchiveRefused:
    started = time.monotonic()
    with pytest.raises(ArchiveRefused) as refused:
        extract_onnx_archive(path, tmp_path / "out", **{"max_total_bytes": MAX_TOTAL, **limits})
    assert time.monotonic() - started < 5  # the whole bomb took ~30 s to decompress
    return refused.value


def test_a_tar_gz_bomb_is_refused_without_decompressing_it(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(tar_gz_bomb(declared=10 * GIB))  # 10 MB holding 10 GiB of zeros, then net.onnx
    assert _refused(bomb, tmp_path).code == "archive_too_large"
    assert not any((tmp_path / "out").rglob("*.bin"))


def test_a_tar_gz_past_the_ratio_inside_the_size_limit_is_refused(tmp_path):
    bomb = tmp_path / "ratio.tar.gz"
    bomb.write_bytes(tar_gz_bomb(declared=GIB))  # 1 MB holding 1 GiB of zeros: ~1000:1, under 4 GiB
    assert _refused(bomb, tmp_path).code == "archive_too_large"


def test_a_zip_past_the_ratio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "RATIO_FLOOR_BYTES", 1000)
    path = tmp_path / "zeros.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("net.onnx", ONNX_STUB)
        archive.writestr("net.onnx.data", bytes(10 * 1024 * 1024))
    assert path.stat().st_size * archives.MAX_RATIO < 10 * 1024 * 1024
    assert _refused(path, tmp_path).code == "archive_too_large"


def test_a_zip_member_holding_more_than_it_declares_is_refused(tmp_path):
    path = tmp_path / "lie.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("net.onnx", ONNX_STUB)
        archive.writestr("net.onnx.data", bytes(1024 * 1024))
    content = bytearray(path.read_bytes())
    # The uncompressed size sits at +22 in the local header (name at +30), at +24 in the directory entry (+46).
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = content.find(signature)
        while not content[at + name_at:].startswith(b"net.onnx.data"):
            at = content.find(signature, at + 4)
        struct.pack_into("<I", content, at + size_at, 10)  # declares 10 bytes
    path.write_bytes(bytes(content))
    assert _refused(path, tmp_path).code == "invalid_archive"


def test_a_tar_with_too_many_members_stops_listing_at_the_cap(tmp_path):
    path = tar_of(tmp_path / "many.tar", {"net.onnx": ONNX_STUB, **{f"{i}.data": b"" for i in range(50)}})
    refused = _refused(path, tmp_path, max_members=10)
    assert refused.code == "archive_too_large" and "more than 10 members" in refused.detail


def test_an_honest_archive_is_still_extracted(tmp_path):
    path = zip_of(tmp_path / "ok.zip", {"net.onnx": ONNX_STUB, "net.onnx.data": bytes(range(256)) * 64})
    assert extract_onnx_archive(path, tmp_path / "out", max_total_bytes=MAX_TOTAL).name == "net.onnx"
