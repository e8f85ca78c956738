"""`gradaudit serve` for tests that manage keys: a clean environment, started on loopback, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from tests.support.ports import free_port
from tests.support.served import CLI  # noqa: F401  (re-exported for the tests)

CONFIGURED = ("DATABASE_URL", "CELERY_BROKER_URL", "GRADAUDIT_DATA_DIR", "GRADAUDIT_ARTIFACT_DIR", "GRADAUDIT_AUTH",
              "GRADAUDIT_API_KEY", "GRADAUDIT_ENV")


def environment(**extra: str) -> dict[str, str]:
    """The environment of someone who configured nothing but `extra`."""
    return {**{key: value for key, value in os.environ.items() if key not in CONFIGURED}, **extra}


def start_serve(tmp_path, env: dict[str, str]):
    """`gradaudit serve` on a free loopback port; (URL, process, log path) once /healthz answers 200."""
    port, log_path = free_port(), tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*CLI, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url, process, log_path
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError(f"serve never became healthy:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM serve and wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


@contextmanager
def serving_with_a_key(tmp_path, key_name: str) -> Iterator[tuple[str, str]]:
    """`gradaudit serve` with GRADAUDIT_AUTH=on and one key made by `gradaudit keys create` while the block runs;
    yields (URL, the key's secret). Stopped after, when its log must hold no traceback."""
    created = subprocess.run([*CLI, "keys", "--data-dir", str(tmp_path / "data"), "create", "--name", key_name],
                             env=environment(), capture_output=True, text=True, timeout=120, check=True)
    url, process, log_path = start_serve(tmp_path, environment(GRADAUDIT_AUTH="on"))
    try:
        yield url, created.stdout.strip()
    finally:
        stop(process)
    assert "Traceback" not in log_path.read_text(errors="replace"), log_path.read_text(errors="replace")[-4000:]
