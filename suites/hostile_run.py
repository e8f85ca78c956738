"""Running the hostile corpus against a live service: send each case, follow its audit, judge the answers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from suites.hostile import ALIVE, Case, Ground, Request

FINAL = ("succeeded", "failed")


@dataclass
class Outcome:
    """What the service answered to one case."""

    case: Case
    post_status: int
    post_code: str | None
    audit_id: str | None = None
    final_status: str | None = None
    final_code: str | None = None
    report_status: int | None = None
    bodies: list[bytes] = field(default_factory=list)
    finding_codes: list[str] = field(default_factory=list)

    def problems(self, ground: Ground) -> list[str]:
        """Every way this outcome differs from the case's expectation; empty when it holds."""
        case, found = self.case, []
        if (self.post_status, self.post_code) != (case.status, case.code):
            found.append(f"answered {self.post_status} {self.post_code}, expected {case.status} {case.code}")
        if case.final and (self.final_status, self.final_code) != case.final:
            found.append(f"audit ended {self.final_status} {self.final_code}, expected {case.final}")
        if case.finding and case.finding not in self.finding_codes:
            found.append(f"the report's findings {self.finding_codes} lack {case.finding}")
        if self.server_errors():
            found.append("a 5xx answer")
        if self.leaks(ground):
            found.append("a leak: the planted secret in an answer, or a marker file written")
        return found

    def server_errors(self) -> int:
        """How many of this case's answers were 5xx."""
        return sum(status >= 500 for status in (self.post_status, self.report_status or 0))

    def leaks(self, ground: Ground) -> int:
        """The planted secret in an answer, or a marker file some hostile code managed to write."""
        leaked = sum(ground.secret_bytes in body for body in self.bodies)
        return leaked + int(ground.marker_for(self.case).exists())

    def stuck(self) -> bool:
        """An accepted audit that never reached a final status."""
        return self.audit_id is not None and self.final_status not in FINAL


def send(url: str, request: Request, timeout_s: float = 60) -> requests.Response:
    """One HTTP request as the case describes it."""
    return requests.request(request.method, url + request.path, files=request.files, data=request.data,
                            headers=request.headers, timeout=timeout_s)


def _code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def post(url: str, case: Case, ground: Ground) -> Outcome:
    """Send the case; its outcome with the audit id if one was accepted."""
    response = send(url, case.build(ground))
    outcome = Outcome(case, response.status_code, _code(response), bodies=[response.content])
    if response.status_code == 202:
        outcome.audit_id = response.json()["id"]
    return outcome


def follow(url: str, outcome: Outcome, deadline: float) -> None:
    """Poll the outcome's audit until it is final or the deadline passes; then read its report."""
    while outcome.audit_id and time.monotonic() < deadline:
        response = requests.get(f"{url}/v1/audits/{outcome.audit_id}", timeout=10)
        body = response.json()
        outcome.final_status, outcome.final_code = body.get("status"), (body.get("error") or {}).get("code")
        if outcome.final_status in FINAL:
            outcome.bodies.append(response.content)
            report = requests.get(f"{url}/v1/audits/{outcome.audit_id}/report", timeout=30)
            outcome.report_status = report.status_code
            outcome.bodies.append(report.content)
            if report.status_code == 200:
                outcome.finding_codes = [finding["code"] for finding in report.json()["findings"]]
            return
        time.sleep(0.3)


def run_corpus(url: str, cases: list[Case], ground: Ground, timeout_s: float = 240) -> list[Outcome]:
    """POST every case, then follow every accepted audit (the worker takes them in turn) within timeout_s."""
    outcomes = [post(url, case, ground) for case in cases]
    deadline = time.monotonic() + timeout_s
    for outcome in outcomes:
        follow(url, outcome, deadline)
    return outcomes


def plain_audit_succeeds(url: str, ground: Ground, timeout_s: float = 120) -> bool:
    """An ordinary small network submitted after the corpus audits: the worker is alive."""
    outcome = post(url, ALIVE, ground)
    follow(url, outcome, time.monotonic() + timeout_s)
    return outcome.final_status == "succeeded"


def summary(outcomes: list[Outcome], ground: Ground, worker_restarts: int) -> str:
    """The one line the bench prints."""
    return (f"hostile: cases={len(outcomes)} server_errors={sum(o.server_errors() for o in outcomes)} "
            f"leaks={sum(o.leaks(ground) for o in outcomes)} stuck={sum(o.stuck() for o in outcomes)} "
            f"worker_restarts={worker_restarts}")


def worker_restarts(serve_log: Path) -> int:
    """How many times serve's supervisor restarted its worker, from serve's log."""
    if not serve_log.exists():
        return 0
    return sum("gradaudit: worker " in line and "restarting" in line
               for line in serve_log.read_text(errors="replace").splitlines())
