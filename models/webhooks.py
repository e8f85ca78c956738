"""Webhooks in the database: where an audit's finish is posted, and one row per attempt to post it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import ApiKey, Audit, WebhookDelivery, utcnow

DELIVERED, FAILED, REFUSED = "delivered", "failed", "refused"


def webhook_url_for(*, db_session: Session, audit: Audit) -> str | None:
    """Where the audit's finish goes: its options' webhook_url, else its key's default, else nowhere."""
    url = (audit.options or {}).get("webhook_url")
    if url or audit.owner_key_id is None:
        return url or None
    key = db_session.get(ApiKey, audit.owner_key_id)
    return key.webhook_url if key is not None else None


def record_delivery(*, db_session: Session, audit_id: str, url: str, attempt: int, status: str,
                    response_status: int | None = None, error: str | None = None) -> WebhookDelivery:
    """Store one attempt, as it ended, and commit it."""
    now = utcnow()
    delivery = WebhookDelivery(audit_id=audit_id, url=url, attempt=attempt, status=status,
                               response_status=response_status, error=error, created_at=now,
                               delivered_at=now if status == DELIVERED else None)
    db_session.add(delivery)
    db_session.commit()
    return delivery


def list_deliveries(*, db_session: Session, audit_id: str) -> list[WebhookDelivery]:
    """Every attempt to post the audit's finish, first first."""
    query = select(WebhookDelivery).where(WebhookDelivery.audit_id == audit_id).order_by(WebhookDelivery.id)
    return list(db_session.scalars(query))


def was_delivered(*, db_session: Session, audit_id: str) -> bool:
    """Whether a receiver already took the audit's finish: a redelivered task then sends nothing."""
    query = select(WebhookDelivery.id).where(WebhookDelivery.audit_id == audit_id,
                                             WebhookDelivery.status == DELIVERED).limit(1)
    return db_session.scalar(query) is not None
