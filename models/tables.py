"""The tables: one row per API key, one per audit, one per layer of an audited network, one per layer and probe batch,
one per webhook delivery attempt.

The layer and batch-row columns are derived from gradaudit.schema's records; the migrations must match them
(tests/migrations checks that autogenerate finds nothing to do)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any, get_args, get_type_hints

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gradaudit.schema import BATCH_ROW_FIELDS, LAYER_FIELDS, BatchRow, LayerRecord
from models.base import Base


class AuditStatus(str, enum.Enum):
    """The life of an audit; the only transitions are queued -> running -> succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """The moment as an aware UTC datetime: SQLite hands back naive ones, which were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def new_audit_id() -> str:
    """A fresh, unguessable audit id."""
    return uuid.uuid4().hex


_STATUSES = ", ".join(f"'{s.value}'" for s in AuditStatus)


class ApiKey(Base):
    """A client's API key: only its sha256 is stored, with a short prefix to recognise it by."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_audit_id)
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where this key's finished audits are posted unless an audit's options name another URL.
    webhook_url: Mapped[str | None] = mapped_column(Text)


class Audit(Base):
    """One audit of one uploaded artifact."""

    __tablename__ = "audits"
    __table_args__ = (CheckConstraint(f"status IN ({_STATUSES})", name="status_valid"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_audit_id)
    status: Mapped[str] = mapped_column(String(16), default=AuditStatus.QUEUED.value, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # While running: loading, checking_parity, converting, probing, diagnosing, verifying; and 0-1, monotonic.
    phase: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float | None] = mapped_column(Float)

    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_format: Mapped[str] = mapped_column(String(16))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255))
    inputs_sha256: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The key that created it; None for audits made while auth was off (only an admin key sees those).
    owner_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)

    network_parameters: Mapped[int | None] = mapped_column(BigInteger)
    network_layers: Mapped[int | None] = mapped_column(Integer)
    setup: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    verdict: Mapped[str | None] = mapped_column(String(16))
    # The best verified fix of every finding applied together, and what that changed (worker/remedies).
    combined: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    layers: Mapped[list[LayerRow]] = relationship(
        back_populates="audit", cascade="all, delete-orphan", order_by="LayerRow.depth"
    )


def _sql_columns(record: type, *, exclude: tuple[str, ...] = ()) -> list[Column]:
    """One column per field of a schema record: its SQL type from the Python type, nullable where it may be None."""
    columns = []
    for name, hint in get_type_hints(record).items():
        if name in exclude:
            continue
        nullable = type(None) in get_args(hint)
        python_type = next((t for t in get_args(hint) if t is not type(None)), hint)
        columns.append(Column(name, _NARROWER.get(name) or _SQL_TYPES[python_type](), nullable=nullable))
    return columns


_SQL_TYPES = {int: BigInteger, float: Float, str: Text}
# Columns narrower than their Python type allows, as the first migrations created them.
_NARROWER = {"kind": String(64), "depth": Integer(), "batch": Integer()}

layer_table = Table(
    "layer_stats", Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("audit_id", ForeignKey("audits.id", ondelete="CASCADE"), index=True, nullable=False),
    *_sql_columns(LayerRecord, exclude=("batch_rows",)),
)
batch_row_table = Table(
    "layer_probes", Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("audit_id", ForeignKey("audits.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("layer_id", ForeignKey("layer_stats.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("depth", Integer, nullable=False),
    *_sql_columns(BatchRow),
)


class LayerRow(Base):
    """A LayerRecord as stored: one layer of an audited network (table layer_stats, its name since v1)."""

    __table__ = layer_table

    audit: Mapped[Audit] = relationship(back_populates="layers")
    batch_rows: Mapped[list[LayerBatchRow]] = relationship(
        back_populates="layer", cascade="all, delete-orphan", order_by="LayerBatchRow.batch"
    )

    def as_dict(self) -> dict[str, Any]:
        """The layer's statistics as plain data."""
        return {column: getattr(self, column) for column in LAYER_FIELDS}

    def with_batch_rows(self) -> dict[str, Any]:
        """The layer as a LayerRecord's plain data: its statistics and its per-batch rows."""
        return {**self.as_dict(), "batch_rows": [row.as_dict() for row in self.batch_rows]}


class LayerBatchRow(Base):
    """A BatchRow as stored: one layer's output statistics on one probe batch (table layer_probes)."""

    __table__ = batch_row_table

    layer: Mapped[LayerRow] = relationship(back_populates="batch_rows")

    def as_dict(self) -> dict[str, Any]:
        """The batch row as plain data, keyed like the engine's BatchRow."""
        return {column: getattr(self, column) for column in BATCH_ROW_FIELDS}


class WebhookDelivery(Base):
    """One attempt to post an audit's finish to its webhook: what was tried and what came back."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # delivered | failed | refused
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
