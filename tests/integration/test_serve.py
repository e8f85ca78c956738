"""`gradaudit serve` with no configuration, and `gradaudit submit` gating on its verdict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests
from torch import nn

from tests.support.ports import free_port
from tests.support.stack import mlp, save_onnx, save_torchscript

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "cli.main"]


def _clean_environment() -> dict[str, str]:
    """The environment of someone who configured nothing."""
    names = ("DATABASE_URL", "CELERY_BROKER_URL", "GRADAUDIT_DATA_DIR", "GRADAUDIT_ARTIFACT_DIR")
    return {key: value for key, value in os.environ.items() if key not in names}


@pytest.fixture
def served(tmp_path):
    """`gradaudit serve` on a free port with an empty data dir; yields its URL."""
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([*CLI, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                               env=_clean_environment(), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, tmp_path / "serve.log")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        log.close()


def _wait_healthy(url: str, process: subprocess.Popen, log_path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"serve never became healthy:\n{log_path.read_text()[-3000:]}")


def _submit(url: str, path, *extra: str) -> subprocess.CompletedProcess:
    command = [*CLI, "submit", str(path), "--url", url, "--wait", "--input-shape", "x=8x32", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_serve_runs_the_whole_service_and_submit_gates_on_the_verdict(served, tmp_path):
    url, process = served
    deep = save_torchscript(mlp(depth=12, activation=nn.Sigmoid), tmp_path / "deep.pt")
    shallow = save_onnx(mlp(depth=2, activation=nn.ReLU), tmp_path / "shallow.onnx")
    children = psutil.Process(process.pid).children(recursive=True)

    gated = _submit(url, deep, "--fail-on", "warning")
    passed = _submit(url, shallow, "--fail-on", "warning", "--json")

    assert gated.returncode == 1, gated.stderr
    assert "vanishing_gradient" in gated.stdout
    assert passed.returncode == 0, passed.stderr
    assert '"verdict": "healthy"' in passed.stdout
    assert (tmp_path / "data" / "gradaudit.db").exists()
    assert len(children) >= 2  # the embedded Redis and the worker

    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    assert _all_gone(children)


def _all_gone(processes: list[psutil.Process], timeout_s: float = 10) -> bool:
    _gone, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return not alive


def test_children_do_not_outlive_a_killed_serve(served):
    _url, process = served
    children = psutil.Process(process.pid).children(recursive=True)

    process.kill()
    process.wait(10)

    assert children and _all_gone(children, timeout_s=30)


def test_submit_reports_a_refused_upload_with_its_code(served, tmp_path):
    url, _process = served
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a network at all")

    result = _submit(url, garbage)

    assert result.returncode == 2
    assert "unsupported_format" in result.stderr
