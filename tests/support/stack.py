"""Helpers for tests on a real stack: worker processes we can kill, networks saved to files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from api import create_app
from gradaudit.settings import Settings, child_environment

POLL_S = 0.2


class WorkerProcess:
    """A `gradaudit worker` in its own process group, logging to a file."""

    def __init__(self, settings: Settings, log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--pool", "prefork"],
            env=child_environment(settings), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Block until Celery says the worker is ready."""
        deadline = time.monotonic() + timeout_s
        while b"ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(POLL_S)

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool children, no chance to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """Ask the worker to stop, then make sure it did."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Stack:
    """The API (in-process test client) over a real broker and database, plus worker processes."""

    def __init__(self, settings: Settings, tmp_path: Path):
        self.settings, self.tmp_path = settings, tmp_path
        self.client = create_app(settings).test_client()
        self.workers: list[WorkerProcess] = []

    def start_worker(self) -> WorkerProcess:
        """Start a worker and wait until it consumes."""
        worker = WorkerProcess(self.settings, self.tmp_path / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def submit(self, path: Path, options: str = "{}") -> str:
        """POST a network; the new audit's id."""
        with path.open("rb") as network_file:
            response = self.client.post("/v1/audits", data={"model": (network_file, path.name), "options": options})
        assert response.status_code == 202, response.json
        return response.json["id"]

    def audit(self, audit_id: str) -> dict:
        """GET the audit."""
        return self.client.get(f"/v1/audits/{audit_id}").json

    def wait_for(self, audit_id: str, statuses: tuple[str, ...], timeout_s: float = 120) -> dict:
        """Poll until the audit is in one of these statuses."""
        deadline = time.monotonic() + timeout_s
        while (audit := self.audit(audit_id))["status"] not in statuses:
            assert time.monotonic() < deadline, f"audit still {audit['status']}, logs: {self.logs()}"
            time.sleep(POLL_S)
        return audit

    def logs(self) -> str:
        """The tail of every worker's log, for failure messages."""
        return "\n".join(worker.log_path.read_text()[-2000:] for worker in self.workers)

    def close(self) -> None:
        """Stop every worker."""
        for worker in self.workers:
            worker.stop()


def _quiet():
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


SLOW_WIDTH = 1024


class Mlp(nn.Module):
    """A width-32 MLP with `depth` hidden layers and ten outputs; its input is named x."""

    def __init__(self, depth: int, activation: type[nn.Module]):
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(32, 32), activation()]
        self.layers = nn.Sequential(*layers, nn.Linear(32, 10))

    def forward(self, x):
        return self.layers(x)


def mlp(depth: int, activation: type[nn.Module]) -> Mlp:
    """An Mlp, seeded so every test gets the same weights."""
    return Mlp(depth, activation)


def save_torchscript(network: nn.Module, path: Path) -> Path:
    """Script and save a network."""
    _quiet()
    torch.jit.save(torch.jit.script(network), str(path))
    return path


def save_onnx(network: nn.Module, path: Path, features: int = 32) -> Path:
    """Export a network with the legacy exporter, fixed batch of 4."""
    _quiet()
    torch.onnx.export(network, (torch.randn(4, features),), str(path), dynamo=False, input_names=["x"])
    return path


class SlowRecurrence(nn.Module):
    """A hundred wide steps: a forward and backward that take seconds, to kill a worker mid-audit."""

    def __init__(self, steps: int, width: int = SLOW_WIDTH):
        super().__init__()
        self.steps = steps
        self.cell = nn.Linear(width, width)

    def forward(self, x):
        for _ in range(self.steps):
            x = torch.tanh(self.cell(x))
        return x


SLOW_OPTIONS = '{"input_shapes": {"x": [64, 1024]}, "batches": 1}'
