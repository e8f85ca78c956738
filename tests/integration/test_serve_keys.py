"""`gradaudit serve` with keys: on loopback it says auth is off; with GRADAUDIT_AUTH=on a key made by
`gradaudit keys create` is needed, and `submit --api-key` runs an audit end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from torch import nn

from tests.support.ports import free_port
from tests.support.stack import mlp, save_onnx

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "cli.main"]
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


def test_serve_on_loopback_says_auth_is_off(tmp_path):
    url, process, log_path = start_serve(tmp_path, environment())
    try:
        assert "auth is OFF" in log_path.read_text()
        assert requests.get(f"{url}/v1/audits", timeout=10).status_code == 200
    finally:
        stop(process)


def test_serve_with_keys_runs_an_audit_for_the_key_holder_only(tmp_path):
    created = subprocess.run([*CLI, "keys", "--data-dir", str(tmp_path / "data"), "create", "--name", "ci"],
                             env=environment(), capture_output=True, text=True, timeout=120, check=True)
    secret = created.stdout.strip()
    network = save_onnx(mlp(depth=2, activation=nn.ReLU), tmp_path / "net.onnx")
    url, process, log_path = start_serve(tmp_path, environment(GRADAUDIT_AUTH="on"))
    try:
        assert "API keys required" in log_path.read_text()
        submit = [*CLI, "submit", str(network), "--url", url, "--wait", "--input-shape", "x=4x32"]
        refused = subprocess.run(submit, env=environment(), capture_output=True, text=True, timeout=120)
        passed = subprocess.run(submit, env=environment(GRADAUDIT_API_KEY=secret), capture_output=True, text=True,
                                timeout=300)

        assert refused.returncode == 2 and "error [unauthorized]" in refused.stderr
        assert passed.returncode == 0, passed.stderr
        listed = requests.get(f"{url}/v1/audits", headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()
        assert listed["total"] == 1 and listed["items"][0]["status"] == "succeeded"
    finally:
        stop(process)
