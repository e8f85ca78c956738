"""A small HTTP client of the gradaudit API, used by `gradaudit submit`."""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import requests

FINISHED = ("succeeded", "failed")


class ServiceError(Exception):
    """The service refused a request or the audit failed: a stable code and a detail."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class Client:
    """Talks to one gradaudit service."""

    def __init__(self, base_url: str, *, api_key: str | None = None, poll_interval_s: float = 1.0,
                 timeout_s: float = 60):
        self.base_url = base_url.rstrip("/")
        self.poll_interval_s, self.timeout_s = poll_interval_s, timeout_s
        self.http = requests.Session()
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def submit(self, path: Path, *, options: dict[str, Any], inputs_path: Path | None = None) -> dict[str, Any]:
        """Upload a network (an ONNX file with its external data file packed into a .zip); returns the queued
        audit."""
        with packed(path) as upload, upload.open("rb") as network_file:
            files = {"model": (upload.name, network_file, "application/octet-stream")}
            if inputs_path:
                files["inputs"] = (inputs_path.name, inputs_path.read_bytes(), "application/octet-stream")
            return self._call("POST", "/v1/audits", files=files, data={"options": json.dumps(options)})

    def audit(self, audit_id: str) -> dict[str, Any]:
        """The audit's status document."""
        return self._call("GET", f"/v1/audits/{audit_id}")

    def report(self, audit_id: str) -> dict[str, Any]:
        """The report of a succeeded audit."""
        return self._call("GET", f"/v1/audits/{audit_id}/report")

    def compare(self, audit_id: str, base_id: str) -> dict[str, Any]:
        """The audit's report against its baseline's (gradaudit/compare.py)."""
        return self._call("GET", f"/v1/audits/{audit_id}/compare/{base_id}")

    def wait_for_report(
        self, audit_id: str, *, timeout_s: float, progress: Callable[[str, float], None] = lambda *_: None
    ) -> dict[str, Any]:
        """Poll until the audit finishes; the report, or ServiceError with the failure's code."""
        started = time.monotonic()
        while True:
            status = self.audit(audit_id)["status"]
            elapsed = time.monotonic() - started
            progress(status, elapsed)
            if status in FINISHED:
                return self.report(audit_id)
            if elapsed > timeout_s:
                raise ServiceError("wait_timeout", f"audit {audit_id} still {status} after {timeout_s:.0f}s")
            time.sleep(self.poll_interval_s)

    def _call(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        try:
            response = self.http.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as error:
            raise ServiceError("service_unreachable", f"{self.base_url}: {type(error).__name__}") from None
        if response.ok:
            return response.json()
        raise _service_error(response)


def _service_error(response: requests.Response) -> ServiceError:
    try:
        problem = response.json()
        return ServiceError(problem.get("code", "http_error"), problem.get("detail") or problem.get("title", ""))
    except ValueError:
        return ServiceError("http_error", f"HTTP {response.status_code}")


@contextmanager
def packed(path: Path) -> Iterator[Path]:
    """The file to upload: path itself, or for NAME.onnx with NAME.onnx.data beside it (what torch's exporter
    writes) a temporary .zip holding both, which the service reads as one network."""
    data = path.with_name(path.name + ".data")
    if path.suffix != ".onnx" or not data.is_file():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gradaudit-") as scratch:
        archive = Path(scratch) / f"{path.stem}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as writer:
            writer.write(path, path.name)
            writer.write(data, data.name)
        yield archive
