"""Archive bombs the tests build themselves, cheaply: no blobs from elsewhere."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib

GIB = 1024**3
_ZERO_BLOCK = 16 * 1024 * 1024


def tar_gz_bomb(name: str = "weights.bin", declared: int = 10 * GIB, then_onnx: bool = True) -> bytes:
    """A .tar.gz whose first member declares `declared` bytes of zeros and holds them, then an .onnx member:
    concatenated gzip members of one compressed block of zeros, so building it costs milliseconds."""
    header = tarfile.TarInfo(name)
    header.size = declared
    zeros = gzip.compress(bytes(_ZERO_BLOCK), compresslevel=9)
    blocks, rest = divmod(declared, _ZERO_BLOCK)
    parts = [gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT)), zeros * blocks, gzip.compress(bytes(rest))]
    padding = (512 - declared % 512) % 512
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w", format=tarfile.GNU_FORMAT) as archive:
        if then_onnx:
            onnx_member = tarfile.TarInfo("net.onnx")
            onnx_member.size = 4
            archive.addfile(onnx_member, io.BytesIO(b"\x08\x07\x12\x00"))
    parts.append(gzip.compress(bytes(padding) + tail.getvalue()))
    return b"".join(parts)


def many_member_zip(members: int, name_width: int = 8) -> bytes:
    """A stored zip of `members` empty files, its local headers and central directory packed by hand (zipfile
    takes seconds to write 200,000 members)."""
    local, directory = io.BytesIO(), io.BytesIO()
    crc = zlib.crc32(b"")
    for index in range(members):
        name = f"m/{index:0{name_width}d}".encode()
        offset = local.tell()
        local.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0) + name)
        directory.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 0, 0,
                                    len(name), 0, 0, 0, 0, 0, offset) + name)
    count = min(members, 0xFFFF)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, directory.tell(), local.tell(), 0)
    return local.getvalue() + directory.getvalue() + end


def many_member_tar(members: int) -> bytes:
    """An uncompressed tar of `members` empty files (512 bytes each)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for index in range(members):
            archive.addfile(tarfile.TarInfo(f"m/{index}"), io.BytesIO(b""))
    return buffer.getvalue()
