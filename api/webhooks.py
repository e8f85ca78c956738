"""Webhooks, the API's part: options.webhook_url checked against this server's settings at submit, and an audit's
deliveries on the wire. The worker sends (worker/webhooks.py)."""

from __future__ import annotations

from typing import Any

from api.problems import problem
from api.services import services
from gradaudit.options import AuditOptions
from gradaudit.webhooks import WebhookRefused, webhook_target
from models.tables import WebhookDelivery, as_utc


def check_webhook_option(options: AuditOptions) -> None:
    """400 invalid_options when the audit names a webhook this server cannot or may not post to."""
    if options.webhook_url is None:
        return
    settings = services().settings
    if not settings.webhook_secret:
        raise _refused("this server sends no webhooks: GRADAUDIT_WEBHOOK_SECRET is not set")
    try:
        webhook_target(options.webhook_url, allow_private=settings.webhook_allow_private)
    except WebhookRefused as refused:
        raise _refused(refused.detail) from None


def _refused(detail: str):
    return problem("invalid_options", detail, errors=[{"field": "webhook_url", "message": detail}])


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    """One attempt to post an audit's finish."""
    return {"attempt": delivery.attempt, "url": delivery.url, "status": delivery.status,
            "response_status": delivery.response_status, "error": delivery.error,
            "created_at": _timestamp(delivery.created_at), "delivered_at": _timestamp(delivery.delivered_at)}


def _timestamp(moment) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")
