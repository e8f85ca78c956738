"""`gradaudit serve` with keys: on loopback it says auth is off; with GRADAUDIT_AUTH=on a key made by
`gradaudit keys create` is needed, and `submit --api-key` runs an audit end to end."""

from __future__ import annotations

import subprocess

import pytest
import requests
from torch import nn

from tests.support.keyed_serve import CLI, environment, start_serve, stop
from tests.support.stack import mlp, save_onnx

pytestmark = pytest.mark.integration

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
