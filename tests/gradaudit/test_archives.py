"""Archive uploads: sniffed by content, extracted only as plain files at confined paths, within limits."""

from __future__ import annotations

import io
import tarfile

import pytest

from gradaudit.archives import ArchiveRefused, extract_onnx_archive, opened_network, safe_relative_path
from gradaudit.formats import UnsupportedFormat, network_format, sniff_format
from tests.support.archive_files import ONNX_STUB, tar_of, zip_of


@pytest.mark.parametrize("build, name", [(zip_of, "a.zip"), (tar_of, "a.tar"),
                                         (lambda p, m: tar_of(p, m, "w:gz"), "a.tar.gz")])
def test_an_archive_holding_an_onnx_file_sniffs_as_onnx_archive(tmp_path, build, name):
    path = build(tmp_path / name, {"net/net.onnx": ONNX_STUB, "net/net.onnx.data": b"\0" * 64})
    with path.open("rb") as stream:
        assert sniff_format(stream) == "onnx_archive"
    assert network_format("onnx_archive") == "onnx"


def test_archives_without_an_onnx_file_are_refused(tmp_path):
    for path in (zip_of(tmp_path / "a.zip", {"notes.txt": b"hi"}), tar_of(tmp_path / "a.tar", {"notes.txt": b"hi"})):
        with path.open("rb") as stream, pytest.raises(UnsupportedFormat):
            sniff_format(stream)


def test_extraction_writes_the_files_and_returns_the_onnx_path(tmp_path):
    archive = zip_of(tmp_path / "a.zip", {"net/net.onnx": ONNX_STUB, "net/net.onnx.data": b"w" * 100})

    onnx_path = extract_onnx_archive(archive, tmp_path / "out", max_total_bytes=10_000)

    assert onnx_path == tmp_path / "out" / "net" / "net.onnx"
    assert onnx_path.read_bytes() == ONNX_STUB
    assert (tmp_path / "out" / "net" / "net.onnx.data").read_bytes() == b"w" * 100


@pytest.mark.parametrize("name", ["/etc/evil", "../evil", "net/../../evil", "C:/evil", ""])
def test_escaping_member_names_are_refused(name):
    with pytest.raises(ArchiveRefused) as refused:
        safe_relative_path(name)
    assert refused.value.code == "unsafe_archive"


def test_a_path_traversal_archive_writes_nothing_outside(tmp_path):
    archive = tar_of(tmp_path / "a.tar", {"net.onnx": ONNX_STUB, "../escaped": b"x"})

    with pytest.raises(ArchiveRefused) as refused:
        extract_onnx_archive(archive, tmp_path / "out", max_total_bytes=10_000)

    assert refused.value.code == "unsafe_archive"
    assert not (tmp_path / "escaped").exists()


def test_links_are_refused(tmp_path):
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("net.onnx")
        info.size = len(ONNX_STUB)
        archive.addfile(info, io.BytesIO(ONNX_STUB))
        link = tarfile.TarInfo("net.onnx.data")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)

    with pytest.raises(ArchiveRefused) as refused:
        extract_onnx_archive(path, tmp_path / "out", max_total_bytes=10_000)
    assert refused.value.code == "unsafe_archive"


def test_size_and_member_limits_hold(tmp_path):
    big = zip_of(tmp_path / "big.zip", {"net.onnx": ONNX_STUB, "w.data": b"\0" * 5000})
    many = zip_of(tmp_path / "many.zip", {"net.onnx": ONNX_STUB, **{f"{i}.data": b"" for i in range(20)}})

    with pytest.raises(ArchiveRefused) as too_big:
        extract_onnx_archive(big, tmp_path / "out1", max_total_bytes=1000)
    with pytest.raises(ArchiveRefused) as too_many:
        extract_onnx_archive(many, tmp_path / "out2", max_total_bytes=10_000, max_members=10)

    assert too_big.value.code == too_many.value.code == "archive_too_large"


def test_exactly_one_onnx_file_is_required(tmp_path):
    two = zip_of(tmp_path / "two.zip", {"a.onnx": ONNX_STUB, "b.onnx": ONNX_STUB})
    with pytest.raises(ArchiveRefused) as refused:
        extract_onnx_archive(two, tmp_path / "out", max_total_bytes=10_000)
    assert refused.value.code == "invalid_archive"


def test_opened_network_removes_the_extraction_folder(tmp_path):
    archive = zip_of(tmp_path / "a.zip", {"net.onnx": ONNX_STUB})
    work = tmp_path / "work"

    with opened_network(archive, "onnx_archive", work, max_total_bytes=10_000) as (path, fmt, data_dir):
        assert (path, fmt, data_dir) == (work / "net.onnx", "onnx", work)  # data beside the .onnx
        assert path.exists()

    assert not work.exists()
    with opened_network(archive, "torchscript", work, max_total_bytes=1) as opened:
        assert opened == (archive, "torchscript", None)
