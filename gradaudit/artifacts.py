"""The artifact store: uploaded files kept once each, in a folder, named by their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1024 * 1024


class ArtifactTooLarge(ValueError):
    """The stream was longer than the store accepts."""


@dataclass(frozen=True)
class StoredArtifact:
    """A file in the store."""

    sha256: str
    size: int
    path: Path


class ArtifactStore:
    """Files under one root, at `<root>/<first two hex digits>/<sha256>`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        """Where the artifact with this digest lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def open(self, sha256: str) -> BinaryIO:
        """The stored artifact, open for reading; OSError (FileNotFoundError) where the store does not hold it."""
        return self.path_for(sha256).open("rb")

    def save(self, stream: BinaryIO, max_bytes: int) -> StoredArtifact:
        """Copy a stream into the store chunk by chunk, hashing as it goes; never whole in memory."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".upload-", delete=False) as partial:
            try:
                while chunk := stream.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ArtifactTooLarge(f"larger than {max_bytes} bytes")
                    digest.update(chunk)
                    partial.write(chunk)
            except BaseException:
                os.unlink(partial.name)
                raise
        return self._keep(Path(partial.name), digest.hexdigest(), size)

    def remove(self, sha256: str, *, written_before: float) -> bool:
        """Remove the stored file unless it was written at or after `written_before` (POSIX time): then someone stored
        the same bytes again, for an audit whose row may not be committed yet. Whether it was removed."""
        path = self.path_for(sha256)
        doomed = path.with_name(f".removing-{sha256}-{uuid.uuid4().hex}")
        try:
            os.rename(path, doomed)  # atomic: from here on, an upload of these bytes makes a new file
        except FileNotFoundError:
            return False
        if doomed.stat().st_mtime >= written_before:
            os.replace(doomed, path)  # written again: keep it (a newer copy there holds the same bytes)
            return False
        doomed.unlink()
        return True

    def _keep(self, partial: Path, sha256: str, size: int) -> StoredArtifact:
        final = self.path_for(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A rename is atomic: a reader never sees half a file, and identical uploads share one copy.
        os.replace(partial, final)
        return StoredArtifact(sha256=sha256, size=size, path=final)
