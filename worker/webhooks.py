"""Posting a finished audit to its webhook: one signed POST per attempt, each attempt a row in webhook_deliveries.

The URL is checked again here, at send time (DNS answers change between submit and finish), and the connection
goes to the very address that passed the check, so a name cannot resolve to a public address for the check and
to a private one for the connection. No redirect is followed, timeouts are short, the receiver's body is never
read, and the Celery task's own time limit bounds a receiver that answers a byte at a time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import certifi
import urllib3
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from gradaudit.errors import one_line
from gradaudit.queue import send_webhook
from gradaudit.settings import Settings
from gradaudit.webhooks import Target, WebhookRefused, signed_headers, signing_secret, webhook_target
from models import audits as audit_rows
from models import webhooks as webhook_rows
from models.audits import FAILED, SUCCEEDED
from models.tables import Audit, as_utc
from worker.context import WorkerContext

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 600.0
SKIPPED = "skipped"  # nothing to send: no such audit, not finished, no URL, or already delivered


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to, as its row stores it; `retry` when another attempt may succeed."""

    status: str
    retry: bool = False
    response_status: int | None = None
    error: str | None = None


def deliver(context: WorkerContext, audit_id: str, attempt: int) -> Outcome:
    """Post the finished audit to its webhook once and record the attempt."""
    with context.sessions() as db_session:
        audit = audit_rows.get_audit(db_session=db_session, audit_id=audit_id)
        url = _pending_url(db_session, audit)
        if url is None:
            return Outcome(SKIPPED)
        body, owner = summary_body(audit), audit.owner_key_id
    outcome = attempt_post(url, body, owner, context.settings)
    with context.sessions() as db_session:
        webhook_rows.record_delivery(db_session=db_session, audit_id=audit_id, url=url, attempt=attempt,
                                     status=outcome.status, response_status=outcome.response_status,
                                     error=outcome.error)
    return outcome


def _pending_url(db_session, audit: Audit | None) -> str | None:
    if audit is None or audit.status not in (SUCCEEDED, FAILED):
        return None
    if webhook_rows.was_delivered(db_session=db_session, audit_id=audit.id):
        return None  # a redelivered task: the receiver has it
    return webhook_rows.webhook_url_for(db_session=db_session, audit=audit)


def attempt_post(url: str, body: bytes, owner_key_id: str | None, settings: Settings) -> Outcome:
    """Check the URL, sign the body with the owner's secret and post it; never raises."""
    if not settings.webhook_secret:
        return Outcome(webhook_rows.REFUSED, error="GRADAUDIT_WEBHOOK_SECRET is not set: there is nothing to sign with")
    try:
        target = webhook_target(url, allow_private=settings.webhook_allow_private)
    except WebhookRefused as refused:
        return Outcome(webhook_rows.REFUSED, error=refused.detail)
    headers = signed_headers(signing_secret(settings.webhook_secret, owner_key_id), body, int(time.time()))
    try:
        status = post(target, body, headers)
    except SoftTimeLimitExceeded:
        return Outcome(webhook_rows.FAILED, retry=True, error="the receiver took too long to answer")
    except (urllib3.exceptions.HTTPError, OSError) as failed:
        return Outcome(webhook_rows.FAILED, retry=True, error=one_line(failed))
    return _judged(status)


def _judged(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(webhook_rows.DELIVERED, response_status=status)
    why = "redirects are not followed" if 300 <= status < 400 else f"the receiver answered {status}"
    return Outcome(webhook_rows.FAILED, retry=True, response_status=status, error=why)


def post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST the body to the checked address, naming the URL's host; the answer's status, its body unread."""
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": target.host_header},
                                redirect=False, retries=False, preload_content=False, assert_same_host=False)
        response.close()  # the receiver's body is not ours to read
        return response.status
    finally:
        pool.close()


def summary_body(audit: Audit) -> bytes:
    """The JSON a receiver gets: the event and the audit's summary (status, verdict, findings, error, links)."""
    return json.dumps({"event": "audit.finished", "audit": audit_summary(audit)}, separators=(",", ":")).encode()


def audit_summary(audit: Audit) -> dict[str, Any]:
    """A finished audit in brief; the links are paths on the API that served it."""
    path = f"/v1/audits/{audit.id}"
    summary = {
        "id": audit.id, "status": audit.status, "verdict": audit.verdict,
        "created_at": _timestamp(audit.created_at), "started_at": _timestamp(audit.started_at),
        "finished_at": _timestamp(audit.finished_at), "attempts": audit.attempts,
        "artifact": {"format": audit.artifact_format, "sha256": audit.artifact_sha256, "size": audit.artifact_size,
                     "filename": audit.filename},
        "findings": [{"code": f["code"], "severity": f["severity"], "title": f["title"]}
                     for f in audit.findings or ()],
        "links": {"self": path, "report": f"{path}/report", "layers": f"{path}/layers",
                  "deliveries": f"{path}/deliveries"},
    }
    if audit.error_code:
        summary["error"] = {"code": audit.error_code, "detail": audit.error_detail}
    return summary


def _timestamp(moment) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")


def backoff_s(settings: Settings, attempt: int) -> float:
    """The wait before attempt + 1: GRADAUDIT_WEBHOOK_BACKOFF_S, doubled after each attempt; capped below the
    broker's visibility timeout, which would otherwise hand a waiting retry to a second worker."""
    cap = min(MAX_BACKOFF_S, settings.visibility_timeout_s / 2)
    return min(cap, settings.webhook_backoff_s * 2 ** (attempt - 1))


def announce_finish(context: WorkerContext, celery: Celery, audit_id: str) -> bool:
    """Queue the webhook of a finished audit that has one; whether it was queued. Never raises: the audit is
    stored, and a webhook's trouble must not touch it."""
    try:
        with context.sessions() as db_session:
            audit = audit_rows.get_audit(db_session=db_session, audit_id=audit_id)
            url = _pending_url(db_session, audit)
        if url is None:
            return False
        send_webhook(celery, audit_id)
        return True
    except Exception:
        log.warning("could not queue the webhook of audit %s", audit_id, exc_info=True)
        return False
