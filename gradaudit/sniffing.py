"""Bounded reads of an archive's member names for the API's format sniffing: a zip's central directory within
a member cap, a tar's headers within a member cap and a decompressed-prefix cap. No archive is decompressed
whole here: the worker extracts, with its own limits (gradaudit/archives.py).
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from typing import BinaryIO

# More members than any network archive we know holds (torch.jit.save writes one per tensor); zipfile's own
# parse of 200,000 members took 13 s and 100 MB.
MAX_SNIFFED_MEMBERS = 10_000
# A central directory entry is 46 bytes and its name; names past 1 KiB are no network's.
MAX_CENTRAL_DIRECTORY_BYTES = MAX_SNIFFED_MEMBERS * 1024
# How much of a .tar.gz is decompressed to look for its .onnx member; a bomb stops here.
MAX_DECOMPRESSED_PREFIX = 8 * 1024 * 1024

_EOCD, _EOCD_SIZE = b"PK\x05\x06", 22
_ZIP64_LOCATOR, _ZIP64_LOCATOR_SIZE = b"PK\x06\x07", 20
_ZIP64_EOCD = b"PK\x06\x06"
_ENTRY, _ENTRY_SIZE = b"PK\x01\x02", 46
_MAX_COMMENT = 65535


class TooManyMembers(ValueError):
    """The archive holds more members (or a larger directory) than sniffing reads."""


class NotAZip(ValueError):
    """No readable central directory."""


def zip_member_names(stream: BinaryIO) -> list[str]:
    """The names in a zip's central directory, read within the caps; the stream is left at 0."""
    try:
        start, size = _central_directory(stream)
        if size > MAX_CENTRAL_DIRECTORY_BYTES:
            raise TooManyMembers(f"a zip central directory of {size} bytes")
        stream.seek(start)
        return _entry_names(stream.read(size))
    finally:
        stream.seek(0)


def _central_directory(stream: BinaryIO) -> tuple[int, int]:
    end = stream.seek(0, 2)
    tail_start = max(0, end - _EOCD_SIZE - _MAX_COMMENT)
    stream.seek(tail_start)
    tail = stream.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise NotAZip("no end of central directory record")
    size = struct.unpack_from("<I", tail, at + 12)[0]
    eocd = tail_start + at
    stream.seek(max(0, eocd - _ZIP64_LOCATOR_SIZE))
    # torch.jit.save writes zip64 records whatever the size, as zipfile reads them when the locator is there.
    if stream.read(_ZIP64_LOCATOR_SIZE).startswith(_ZIP64_LOCATOR):
        return _zip64_directory(stream, eocd)
    # As zipfile does: the directory ends where the record starts (data may be prepended to the zip).
    return eocd - size, size


def _zip64_directory(stream: BinaryIO, eocd: int) -> tuple[int, int]:
    record_start = eocd - _ZIP64_LOCATOR_SIZE - 56
    stream.seek(max(0, record_start))
    record = stream.read(56)
    if len(record) < 56 or not record.startswith(_ZIP64_EOCD):
        raise NotAZip("a zip64 archive without its end record")
    size = struct.unpack_from("<Q", record, 40)[0]
    return record_start - size, size


def _entry_names(directory: bytes) -> list[str]:
    names, at = [], 0
    while at + _ENTRY_SIZE <= len(directory) and directory.startswith(_ENTRY, at):
        if len(names) >= MAX_SNIFFED_MEMBERS:
            raise TooManyMembers(f"more than {MAX_SNIFFED_MEMBERS} zip members")
        flags = struct.unpack_from("<H", directory, at + 8)[0]
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", directory, at + 28)
        raw = directory[at + _ENTRY_SIZE: at + _ENTRY_SIZE + name_length]
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace"))
        at += _ENTRY_SIZE + name_length + extra_length + comment_length
    if at != len(directory):
        raise NotAZip("a damaged central directory")
    return names


def tar_member_names(stream: BinaryIO) -> tuple[list[str], bool]:
    """The member names a tar (or .tar.gz) shows within the caps, and whether they are all of them."""
    try:
        head = stream.read(2)
        stream.seek(0)
        if head == b"\x1f\x8b":
            return _names_in_prefix(_decompressed_prefix(stream))
        return _tar_names(stream, complete_stream=True)
    finally:
        stream.seek(0)


def _decompressed_prefix(stream: BinaryIO) -> tuple[bytes, bool]:
    try:
        with gzip.GzipFile(fileobj=stream) as unpacked:
            prefix = unpacked.read(MAX_DECOMPRESSED_PREFIX + 1)
    except (OSError, EOFError, zlib.error) as damaged:
        raise tarfile.ReadError("a damaged gzip stream") from damaged
    return prefix[:MAX_DECOMPRESSED_PREFIX], len(prefix) <= MAX_DECOMPRESSED_PREFIX


def _names_in_prefix(prefix_and_whole: tuple[bytes, bool]) -> tuple[list[str], bool]:
    prefix, whole = prefix_and_whole
    try:
        return _tar_names(io.BytesIO(prefix), complete_stream=whole)
    except tarfile.TarError:
        if whole:
            raise
        return [], False  # a member header cut by the prefix: undecided, the worker reads the rest


def _tar_names(stream: BinaryIO, *, complete_stream: bool) -> tuple[list[str], bool]:
    names = []
    # Uncompressed, tarfile seeks over member data: only headers are read.
    with tarfile.open(fileobj=stream, mode="r:") as archive:
        while (member := archive.next()) is not None:
            if len(names) >= MAX_SNIFFED_MEMBERS:
                raise TooManyMembers(f"more than {MAX_SNIFFED_MEMBERS} tar members")
            names.append(member.name)
            if member.offset_data + member.size > _size(stream):
                return names, False  # the data runs past the prefix
    return names, complete_stream


def _size(stream: BinaryIO) -> int:
    here = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(here)
    return end
