"""Archive uploads: a .zip or .tar holding an .onnx file and the external data files it references.

The dynamo exporter writes weights to `NAME.onnx.data` beside the `.onnx`, and networks over
protobuf's 2 GB limit must. An archive is extracted into a folder of its own, with limits on
member count and size, and only plain files at confined relative paths: no absolute paths, no
`..`, no links or devices.
"""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

from gradaudit.errors import error_code

MAX_MEMBERS = 1000
CHUNK_BYTES = 1024 * 1024
# Extracted bytes per stored byte past which an archive is a bomb, not weights: float weights barely compress,
# zeros do ~1000:1. Archives that extract to less than the floor are never judged by ratio.
MAX_RATIO = 1000
RATIO_FLOOR_BYTES = 64 * 1024 * 1024
_TAR_HEADER_ROOM = 1024  # a member's header and its padding, per member


class ArchiveRefused(ValueError):
    """The archive cannot be used; `code` is stable, `detail` says why."""

    def __init__(self, code: str, detail: str):
        error_code(code)
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Member:
    """One entry of an archive, with an opener for its bytes."""

    name: str
    size: int
    is_dir: bool
    is_file: bool
    open: Callable[[], BinaryIO]


def has_onnx_member(names: list[str]) -> bool:
    """True when an archive's member names include an .onnx file."""
    return any(name.lower().endswith(".onnx") for name in names)


def extract_onnx_archive(path: Path, destination: Path, *, max_total_bytes: int,
                         max_members: int = MAX_MEMBERS) -> Path:
    """Extract the archive into `destination`; the path of its single .onnx file."""
    destination.mkdir(parents=True, exist_ok=True)
    max_total_bytes = min(max_total_bytes, _ratio_limit(path))
    members = _listed(_members(path, max_total_bytes, max_members), max_members)
    _check_members(members, max_total_bytes, max_members)
    written = 0
    for member in members:
        written += _extract(member, destination, max_total_bytes - written)
    return destination / _single_onnx(members)


def _ratio_limit(path: Path) -> int:
    return max(RATIO_FLOOR_BYTES, MAX_RATIO * path.stat().st_size)


def _listed(members: Iterator[Member], max_members: int) -> list[Member]:
    listed = []
    for member in members:
        if len(listed) >= max_members:  # stop reading: a crafted archive can hold millions of headers
            raise ArchiveRefused("archive_too_large", f"more than {max_members} members; at most {max_members} "
                                                      "are accepted")
        listed.append(member)
    return listed


def _members(path: Path, max_total_bytes: int, max_members: int) -> Iterator[Member]:
    if zipfile.is_zipfile(path):
        yield from _zip_members(path)
    else:
        yield from _tar_members(path, max_total_bytes + (max_members + 2) * _TAR_HEADER_ROOM)


def _zip_members(path: Path) -> Iterator[Member]:
    archive = zipfile.ZipFile(path)
    for info in archive.infolist():
        mode = info.external_attr >> 16
        is_link = stat.S_ISLNK(mode)
        yield Member(info.filename, info.file_size, info.is_dir(), not info.is_dir() and not is_link,
                     lambda info=info: archive.open(info))


def _tar_members(path: Path, max_position: int) -> Iterator[Member]:
    try:
        archive = tarfile.open(fileobj=_tar_stream(path, max_position), mode="r:")
        while (info := archive.next()) is not None:
            yield Member(info.name, info.size, info.isdir(), info.isreg(),
                         lambda info=info: archive.extractfile(info))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ArchiveRefused("invalid_archive", "not a readable .zip or .tar archive") from error


def _tar_stream(path: Path, max_position: int) -> BinaryIO:
    with path.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    return _Bounded(gzip.GzipFile(path), max_position) if compressed else path.open("rb")


class _Bounded(io.RawIOBase):
    """A decompressing stream that refuses to go past a position instead of decompressing up to it: tarfile
    seeks over each member's declared size, and a bomb declares gigabytes of zeros."""

    def __init__(self, stream: gzip.GzipFile, max_position: int):
        super().__init__()
        self._stream, self._max = stream, max_position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._stream.tell() + offset
        if whence == io.SEEK_END or target > self._max:
            raise ArchiveRefused("archive_too_large", f"extracts to more than {self._max} bytes, or more than "
                                                      f"{MAX_RATIO} times its compressed size")
        return self._stream.seek(target)

    def read(self, size: int = -1) -> bytes:
        room = self._max - self._stream.tell()
        chunk = self._stream.read(room + 1 if size < 0 else min(size, room + 1))
        if self._stream.tell() > self._max:
            raise ArchiveRefused("archive_too_large", f"extracts to more than {self._max} bytes")
        return chunk


def _check_members(members: list[Member], max_total_bytes: int, max_members: int) -> None:
    if len(members) > max_members:
        raise ArchiveRefused("archive_too_large", f"{len(members)} members; at most {max_members} are accepted")
    if sum(member.size for member in members) > max_total_bytes:
        raise ArchiveRefused("archive_too_large", f"extracts to more than {max_total_bytes} bytes")
    for member in members:
        safe_relative_path(member.name)
        if not (member.is_dir or member.is_file):
            raise ArchiveRefused("unsafe_archive", f"member {member.name!r} is a link or a device; only files")
    _single_onnx(members)


def safe_relative_path(name: str) -> PurePosixPath:
    """The member name as a relative path that cannot leave its folder, or ArchiveRefused."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        raise ArchiveRefused("unsafe_archive", f"member {name!r} has an absolute or escaping path")
    return path


def _single_onnx(members: list[Member]) -> PurePosixPath:
    found = [safe_relative_path(m.name) for m in members if m.is_file and m.name.lower().endswith(".onnx")]
    if len(found) != 1:
        raise ArchiveRefused("invalid_archive", f"the archive must hold exactly one .onnx file; it holds {len(found)}")
    return found[0]


def _extract(member: Member, destination: Path, budget: int) -> int:
    target = destination / safe_relative_path(member.name)
    if member.is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with member.open() as source, target.open("wb") as sink:
        return _copy_within(source, sink, budget, member.name)


def _copy_within(source: BinaryIO, sink: BinaryIO, budget: int, name: str) -> int:
    """Copy, counting real bytes: declared sizes in a crafted archive can lie."""
    copied = 0
    try:
        while chunk := source.read(CHUNK_BYTES):
            copied += len(chunk)
            if copied > budget:
                raise ArchiveRefused("archive_too_large", f"member {name!r} extracts past the size limit")
            sink.write(chunk)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, NotImplementedError) as damaged:
        # zipfile stops at the declared size and then finds the CRC wrong; tarfile finds a short member.
        raise ArchiveRefused("invalid_archive", f"member {name!r} is damaged or not what its header declares "
                                                f"({type(damaged).__name__})") from None
    return copied


def remove_tree(folder: Path) -> None:
    """Delete an extraction folder, ignoring one that is already gone."""
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def opened_network(path: Path, artifact_format: str, work_dir: Path, *, max_total_bytes: int):
    """Yield (network path, network format, external data folder); an archive is extracted into
    work_dir for the duration and removed afterwards. External data is read from the .onnx file's
    own folder, as onnx resolves relative locations."""
    if artifact_format != "onnx_archive":
        yield path, artifact_format, None
        return
    try:
        onnx_path = extract_onnx_archive(path, work_dir, max_total_bytes=max_total_bytes)
        yield onnx_path, "onnx", onnx_path.parent
    finally:
        remove_tree(work_dir)
