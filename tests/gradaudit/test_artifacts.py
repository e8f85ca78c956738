"""gradaudit.artifacts: files stored once, named by sha256, never half-written."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from gradaudit.artifacts import CHUNK_BYTES, ArtifactStore, ArtifactTooLarge


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    """An empty store in the test's folder."""
    return ArtifactStore(tmp_path / "artifacts")


def files_in(store: ArtifactStore) -> list[str]:
    """Every file in the store, partial ones included, relative to its root."""
    return sorted(str(path.relative_to(store.root)) for path in store.root.rglob("*") if path.is_file())


def test_save_names_the_file_by_its_sha256(store):
    content = b"network bytes"
    sha256 = hashlib.sha256(content).hexdigest()
    stored = store.save(io.BytesIO(content), max_bytes=1000)

    assert (stored.sha256, stored.size) == (sha256, len(content))
    assert stored.path == store.root / sha256[:2] / sha256 == store.path_for(sha256)
    assert stored.path.read_bytes() == content
    assert files_in(store) == [f"{sha256[:2]}/{sha256}"]


def test_large_content_is_hashed_across_chunks(store):
    content = os.urandom(2 * CHUNK_BYTES + 12345)
    stored = store.save(io.BytesIO(content), max_bytes=len(content))

    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.path.read_bytes() == content


def test_identical_content_is_stored_once(store):
    first = store.save(io.BytesIO(b"same"), max_bytes=10)
    second = store.save(io.BytesIO(b"same"), max_bytes=10)

    assert first == second
    assert len(files_in(store)) == 1


def test_different_content_gets_different_files(store):
    store.save(io.BytesIO(b"one"), max_bytes=10)
    store.save(io.BytesIO(b"two"), max_bytes=10)
    assert len(files_in(store)) == 2


def test_exactly_the_limit_is_accepted(store):
    assert store.save(io.BytesIO(b"x" * 100), max_bytes=100).size == 100


@pytest.mark.parametrize("size", [101, 3 * CHUNK_BYTES])
def test_too_large_leaves_no_file(store, size):
    with pytest.raises(ArtifactTooLarge):
        store.save(io.BytesIO(b"x" * size), max_bytes=100)
    assert files_in(store) == []


class BrokenStream(io.RawIOBase):
    """Gives one chunk, then fails like a dropped connection."""

    def __init__(self):
        self.calls = 0

    def read(self, size=-1):
        self.calls += 1
        if self.calls == 1:
            return b"a" * 10
        raise ConnectionResetError("client went away")


def test_failed_read_leaves_no_file(store):
    with pytest.raises(ConnectionResetError):
        store.save(BrokenStream(), max_bytes=1000)
    assert files_in(store) == []


def test_empty_stream(store):
    stored = store.save(io.BytesIO(b""), max_bytes=10)
    assert (stored.sha256, stored.size) == (hashlib.sha256(b"").hexdigest(), 0)


@pytest.mark.parametrize("digest", ["", "ab", "A" * 64, "g" * 64, "../" + "a" * 61, "a" * 65])
def test_path_for_refuses_anything_but_a_sha256(store, digest):
    with pytest.raises(ValueError, match="not a sha256"):
        store.path_for(digest)
