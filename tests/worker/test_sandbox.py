"""The audit's child process, from the inside: what a network's code could try, and what it gets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from worker.sandbox import landlock
from worker.sandbox.child import run_in_child
from worker.sandbox.policy import policy_for

SECRET = b"gradaudit-test-secret-4f1c9e"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the user change and the network namespace need root")
needs_landlock = pytest.mark.skipif(landlock.abi_version() < 1, reason="the kernel has no Landlock")


@pytest.fixture
def settings(make_settings):
    """Short limits, so bombs go off quickly."""
    return make_settings(soft_time_limit_s=3, hard_time_limit_s=6, audit_memory_mb=256)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A world-readable file outside the sandbox: only the filesystem view keeps it from the audit."""
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    path.chmod(0o644)
    return path


def _in_child(settings, tmp_path: Path, work, reads=()):
    policy = policy_for(settings, tmp_path / "scratch", list(reads), drop_user=True)
    return run_in_child(work, policy)


def _attempt(action) -> str:
    """What an action inside the child got: ok:<value> or the exception's type."""
    try:
        return f"ok:{action()}"
    except Exception as refused:  # noqa: BLE001 -- the test wants the type, whatever it is
        return type(refused).__name__


def _read(path) -> str:
    return Path(path).read_bytes().decode(errors="replace")


@needs_landlock
def test_the_audit_reads_no_file_outside_its_view(settings, tmp_path, secret):
    answer = _in_child(settings, tmp_path, lambda _reads: {
        "secret": _attempt(lambda: _read(secret)), "passwd": _attempt(lambda: _read("/etc/passwd")),
        "shadow": _attempt(lambda: _read("/etc/shadow")), "environ": _attempt(lambda: _read("/proc/1/environ")),
    })

    assert answer["secret"] == answer["passwd"] == answer["shadow"] == "PermissionError"
    assert not answer["environ"].startswith("ok:")
    assert SECRET.decode() not in repr(answer)


def test_the_audit_reads_its_upload_and_writes_only_in_its_scratch_folder(settings, tmp_path, secret):
    upload = tmp_path / "store" / "upload.bin"
    upload.parent.mkdir()
    upload.write_bytes(b"the network")
    upload.chmod(0o600)  # as the artifact store keeps it
    outside = tmp_path / "outside.txt"

    answer = _in_child(settings, tmp_path, lambda reads: {
        "upload": _attempt(lambda: _read(reads[0])),
        "scratch": _attempt(lambda: Path("made-here.txt").write_text("x")),
        "outside": _attempt(lambda: outside.write_text("x")),
        "overwrite": _attempt(lambda: secret.write_bytes(b"changed")),
        "tmp": _attempt(lambda: Path("/tmp/gradaudit-sandbox-escape").write_text("x")),
    }, reads=[upload])

    assert (answer["upload"], answer["scratch"]) == ("ok:the network", "ok:1")
    assert answer["outside"] == answer["overwrite"] == answer["tmp"] == "PermissionError"
    assert not outside.exists() and secret.read_bytes() == SECRET


def test_the_audit_opens_no_socket(settings, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        answer = _in_child(settings, tmp_path, lambda _reads: {
            "tcp": _attempt(lambda: socket.socket().connect(("127.0.0.1", port))),
            "unix": _attempt(lambda: socket.socket(socket.AF_UNIX)),
        })
    finally:
        listener.close()

    assert answer["tcp"] == answer["unix"] == "PermissionError"


def test_the_audit_starts_no_process_but_may_start_threads(settings, tmp_path):
    def work(_reads):
        box = []
        thread = threading.Thread(target=lambda: box.append("ran"))
        thread.start()
        thread.join()
        return {"fork": _attempt(os.fork), "spawn": _attempt(lambda: subprocess.run(["true"], check=True)),
                "thread": box}

    answer = _in_child(settings, tmp_path, work)

    assert answer["fork"] == answer["spawn"] == "PermissionError"
    assert answer["thread"] == ["ran"]


@needs_root
def test_the_audit_runs_as_the_sandbox_user_without_the_pools_secrets(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db/gradaudit")
    kept_open = os.open(__file__, os.O_RDONLY)  # like the pool's database and broker connections
    try:
        answer = _in_child(settings, tmp_path, lambda _reads: {
            "uid": os.getuid(), "gids": os.getgroups(), "environment": dict(os.environ),
            "inherited": _attempt(lambda: os.fstat(kept_open).st_size),
        })
    finally:
        os.close(kept_open)

    assert answer["uid"] != 0 and answer["gids"] == []
    assert "DATABASE_URL" not in answer["environment"] and "hunter2" not in repr(answer)
    assert answer["inherited"] == "OSError"
    assert "no network (namespace)" in answer["sandbox"]


def test_memory_past_the_limit_is_resource_limit_exceeded(settings, tmp_path):
    answer = _in_child(settings, tmp_path, lambda _reads: {"size": len(bytearray(512 << 20))})

    assert answer["error"]["code"] == "resource_limit_exceeded"
    assert "256 MB" in answer["error"]["detail"]


def test_a_loop_that_never_ends_is_killed_at_the_time_limit(settings, tmp_path):
    started = time.monotonic()

    answer = _in_child(settings, tmp_path, lambda _reads: {"never": _spin()})

    assert answer["error"]["code"] == "time_limit_exceeded"
    assert 3 <= time.monotonic() - started < 10


def test_a_crash_is_a_coded_failure_naming_the_signal(settings, tmp_path):
    answer = _in_child(settings, tmp_path, lambda _reads: {"never": os.kill(os.getpid(), signal.SIGSEGV)})

    assert answer["error"] == {"code": "audit_crashed", "detail": "the audit's process died of SIGSEGV"}


def test_the_parent_survives_and_runs_the_next_child(settings, tmp_path):
    _in_child(settings, tmp_path, lambda _reads: {"never": os.kill(os.getpid(), signal.SIGKILL)})

    assert _in_child(settings, tmp_path, lambda _reads: {"pid": os.getpid()})["pid"] != os.getpid()


def _spin() -> None:
    while True:
        pass


class _Usage:
    """The CPU seconds os.wait4 reports."""

    def __init__(self, cpu_s: float):
        self.ru_utime, self.ru_stime = cpu_s, 0.0


@pytest.mark.parametrize(("status", "cpu_s", "code"), [
    (signal.SIGXCPU, 1.0, "time_limit_exceeded"),  # RLIMIT_CPU's soft limit
    (signal.SIGKILL, 10_000.0, "time_limit_exceeded"),  # its hard limit
    (signal.SIGKILL, 1.0, "resource_limit_exceeded"),  # the kernel's out-of-memory killer
    (signal.SIGABRT, 1.0, "audit_crashed"),
    (1 << 8, 1.0, "audit_crashed"),  # exited with status 1, no answer
])
def test_a_death_is_classified_by_its_cause(settings, tmp_path, status, cpu_s, code):
    from worker.sandbox.outcome import classify_death

    policy = policy_for(settings, tmp_path, [], drop_user=False)

    answer = classify_death(status, _Usage(cpu_s), b"", overran=False, policy=policy)

    assert answer["error"]["code"] == code
