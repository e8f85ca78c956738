"""The Python client of a gradaudit service: upload a network, wait for its report, read, list and compare audits.

    from gradaudit.client import Client, ServiceError

    client = Client("http://127.0.0.1:8000", api_key="...")
    report = client.audit("net.onnx", options={"input_shapes": {"x": [8, 32]}})  # uploads, waits, reports
    print(report["verdict"], [finding["code"] for finding in report["findings"]])

Plain `requests`, no torch: it runs wherever a pipeline does. Every failure is a ServiceError carrying the
problem's code, status and detail (an audit that failed raises with the code it failed with). `gradaudit submit`,
`show` and `compare` use this client.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlsplit

import requests

from gradaudit.compare import Comparison
from gradaudit.schema import Phase, Report

FINISHED = ("succeeded", "failed")
DEFAULT_WAIT_S = 1800.0


class Artifact(TypedDict):
    """The uploaded file, as the service stored it."""

    format: str
    sha256: str
    size: int
    filename: str | None


class AuditFailure(TypedDict):
    """Why an audit failed: a stable code (README: Errors) and a detail."""

    code: str
    detail: str | None


class Audit(TypedDict):
    """An audit's status document (GET /v1/audits/{id}; the OpenAPI schema `Audit`)."""

    id: str
    status: str  # queued | running | succeeded | failed
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    phase: Phase | None  # where a running audit is (or a finished one ended)
    progress: float | None  # 0..1, never back
    artifact: Artifact
    options: NotRequired[dict[str, Any]]  # left out of list items
    verdict: str | None
    links: dict[str, str]
    error: NotRequired[AuditFailure]


class AuditPage(TypedDict):
    """A page of audits, newest first (GET /v1/audits)."""

    items: list[Audit]
    total: int
    limit: int
    offset: int
    next: str | None


class ServiceError(Exception):
    """The service refused a request, the audit failed, or the service could not be reached: `code` is the stable
    code (the README's error table, or service_unreachable / wait_timeout / http_error from the client), `status`
    the HTTP status where there was a response, `problem` the problem document."""

    def __init__(self, code: str, detail: str, *, status: int | None = None, problem: dict[str, Any] | None = None):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.status = code, detail, status
        self.problem = problem or _problem(code, detail, status)


OnPoll = Callable[[Audit], None]


class Client:
    """Talks to one gradaudit service. url: http://HOST:PORT (a URL without a scheme is taken as http)."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout_s: float = 60, poll_interval_s: float = 1.0):
        self.base_url = service_url(url)
        self.timeout_s, self.poll_interval_s = timeout_s, poll_interval_s
        self.http = requests.Session()
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def audit(self, path: str | Path, options: Mapping[str, Any] | None = None, inputs: str | Path | None = None, *,
              wait: bool = True, timeout: float = DEFAULT_WAIT_S, on_poll: OnPoll | None = None) -> Report | Audit:
        """Upload a network and, with wait, return its report once it has finished (ServiceError with the audit's
        code if it failed, wait_timeout past `timeout` seconds); without, return the queued audit."""
        queued = self.submit(path, options, inputs)
        if not wait:
            return queued
        self.wait(queued["id"], timeout=timeout, on_poll=on_poll)
        return self.report(queued["id"])

    def submit(self, path: str | Path, options: Mapping[str, Any] | None = None,
               inputs: str | Path | None = None) -> Audit:
        """Upload a network (an ONNX file with its NAME.onnx.data beside it goes as one .zip) and its options
        (gradaudit.options.AuditOptions' fields) and, optionally, an .npz of inputs; the queued audit."""
        with packed(Path(path)) as upload, upload.open("rb") as network_file:
            files = {"model": (upload.name, network_file, "application/octet-stream")}
            if inputs is not None:
                files["inputs"] = (Path(inputs).name, Path(inputs).read_bytes(), "application/octet-stream")
            return self._json("POST", "/v1/audits", files=files, data={"options": json.dumps(dict(options or {}))})

    def get(self, audit_id: str) -> Audit:
        """The audit's status document: status, phase, progress, verdict, error."""
        return self._json("GET", f"/v1/audits/{audit_id}")

    def report(self, audit_id: str) -> Report:
        """The report of a succeeded audit; ServiceError with the failure's code for a failed one, and
        audit_not_finished while it runs."""
        return self._json("GET", f"/v1/audits/{audit_id}/report")

    def report_html(self, audit_id: str) -> str:
        """The report as a self-contained HTML page."""
        return self._request("GET", f"/v1/audits/{audit_id}/report.html").text

    def list(self, limit: int = 20, offset: int = 0) -> AuditPage:
        """A page of this key's audits, newest first."""
        return self._json("GET", "/v1/audits", params={"limit": limit, "offset": offset})

    def compare(self, audit_id: str, base_id: str) -> Comparison:
        """The audit's report against its baseline's: findings added, removed or changed, layer changes, and
        whether it regressed (gradaudit/compare.py)."""
        return self._json("GET", f"/v1/audits/{audit_id}/compare/{base_id}")

    def wait(self, audit_id: str, timeout: float = DEFAULT_WAIT_S, on_poll: OnPoll | None = None) -> Audit:
        """Poll until the audit has finished (succeeded or failed) and return it; on_poll sees every poll;
        ServiceError("wait_timeout") past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            audit = self.get(audit_id)
            if on_poll is not None:
                on_poll(audit)
            if audit["status"] in FINISHED:
                return audit
            if time.monotonic() >= deadline:
                raise ServiceError("wait_timeout", f"audit {audit_id} still {audit['status']} after {timeout:g} s")
            time.sleep(min(self.poll_interval_s, max(deadline - time.monotonic(), 0.0)))

    def _json(self, method: str, path: str, **kwargs) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.http.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as error:
            raise ServiceError("service_unreachable", f"{self.base_url}: {type(error).__name__}") from None
        if response.ok:
            return response
        raise _refusal(response)


def service_url(url: str) -> str:
    """The service's base URL: http:// is assumed where no scheme is given; ValueError for anything but an http
    or https URL with a host."""
    given = url.strip()
    candidate = given if "://" in given else f"http://{given}"
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{given!r} is not a gradaudit service URL: give http://HOST:PORT or https://HOST")
    return candidate.rstrip("/")


def _refusal(response: requests.Response) -> ServiceError:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict) or "code" not in problem:
        return ServiceError("http_error", f"HTTP {response.status_code}", status=response.status_code)
    detail = str(problem.get("detail") or problem.get("title") or "")
    return ServiceError(str(problem["code"]), detail, status=response.status_code, problem=problem)


def _problem(code: str, detail: str, status: int | None) -> dict[str, Any]:
    """A problem document for a failure that came with none (the service unreachable, a wait that timed out)."""
    document = {"type": f"https://gradaudit.dev/problems/{code}", "title": code.replace("_", " "), "code": code,
                "detail": detail}
    return {**document, "status": status} if status is not None else document


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
