"""`gradaudit serve` as a child of a test: started on a data dir, its children found, its audits followed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from tests.support.ports import free_port

CLI = [sys.executable, "-m", "cli.main"]
FINISHED = ("succeeded", "failed")
# Quick heartbeats, so a dead worker is seen, and its audit sent again, in seconds.
QUICK = {"GRADAUDIT_HEARTBEAT_S": "0.5", "GRADAUDIT_STALE_AFTER_S": "3", "GRADAUDIT_AUTH": "false"}


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment of someone who configured nothing but `extra`."""
    names = ("DATABASE_URL", "CELERY_BROKER_URL", "GRADAUDIT_DATA_DIR", "GRADAUDIT_ARTIFACT_DIR")
    return {**{key: value for key, value in os.environ.items() if key not in names}, **extra}


class Served:
    """One `gradaudit serve` process on a free port, logging to a file in the test's folder."""

    def __init__(self, tmp_path: Path, data_dir: Path, log_name: str = "serve.log", **environment: str):
        self.log_path = tmp_path / log_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([*CLI, "serve", "--port", str(self.port), "--data-dir", str(data_dir)],
                                            env=clean_environment(**QUICK, **environment), stdout=log, stderr=subprocess.STDOUT,
                                            cwd=tmp_path)

    def log(self) -> str:
        """The tail of serve's log (its children's included)."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_until(self, predicate, what: str, timeout_s: float = 90):
        """Poll predicate() until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited while waiting for {what}:\n{self.log()}"
            try:
                if value := predicate():
                    return value
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def health(self) -> dict:
        """GET /healthz's checks."""
        return requests.get(f"{self.url}/healthz", timeout=5).json()["checks"]

    def wait_ready(self) -> None:
        """Until /readyz says a worker lives."""
        self.wait_until(lambda: requests.get(f"{self.url}/readyz", timeout=5).status_code == 200, "readiness")

    def submit(self, path: Path, options: str) -> str:
        """POST a network; its audit id."""
        with path.open("rb") as network_file:
            response = requests.post(f"{self.url}/v1/audits", files={"model": (path.name, network_file)},
                                     data={"options": options}, timeout=60)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def audit(self, audit_id: str) -> dict:
        """GET the audit."""
        return requests.get(f"{self.url}/v1/audits/{audit_id}", timeout=5).json()

    def wait_status(self, audit_id: str, statuses: tuple[str, ...], timeout_s: float = 120) -> dict:
        """Until the audit is in one of these statuses; the audit."""
        def reached():
            audit = self.audit(audit_id)
            return audit if audit["status"] in statuses else None
        return self.wait_until(reached, f"audit {audit_id} to be {statuses}", timeout_s)

    def child(self, name: str) -> psutil.Process:
        """serve's direct child: 'redis-server' (the program) or 'worker' (the `gradaudit worker` command)."""
        def is_it(child: psutil.Process) -> bool:
            # Redis rewrites its command line (its process title); its name stays.
            return child.name() == name if name == "redis-server" else child.cmdline()[-1:] == [name]

        def found():
            return next((child for child in psutil.Process(self.process.pid).children() if is_it(child)), None)
        return self.wait_until(found, f"serve's child {name}")

    def stop(self) -> None:
        """SIGTERM serve and wait for it and its children."""
        if self.process.poll() is None:
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.process.terminate()
            self.process.wait(60)
            psutil.wait_procs(children, timeout=30)
