"""The tables: one row per audit, one per layer of an audited network, one per layer and probe batch."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

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

    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_format: Mapped[str] = mapped_column(String(16))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255))
    inputs_sha256: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)

    network_parameters: Mapped[int | None] = mapped_column(BigInteger)
    network_layers: Mapped[int | None] = mapped_column(Integer)
    setup: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    verdict: Mapped[str | None] = mapped_column(String(16))

    layers: Mapped[list[LayerStat]] = relationship(
        back_populates="audit", cascade="all, delete-orphan", order_by="LayerStat.depth"
    )


class LayerStat(Base):
    """Parameter-gradient statistics of one layer, as measured by one audit."""

    __tablename__ = "layer_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(64))
    depth: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[int] = mapped_column(BigInteger)
    weight_norm: Mapped[float] = mapped_column(Float)
    grad_norm: Mapped[float] = mapped_column(Float)
    grad_mean_abs: Mapped[float] = mapped_column(Float)
    grad_std: Mapped[float] = mapped_column(Float)
    grad_max_abs: Mapped[float] = mapped_column(Float)
    grad_zero_fraction: Mapped[float] = mapped_column(Float)
    grad_nonfinite: Mapped[int] = mapped_column(BigInteger)
    grad_to_weight: Mapped[float] = mapped_column(Float)

    audit: Mapped[Audit] = relationship(back_populates="layers")
    probes: Mapped[list[LayerProbe]] = relationship(
        back_populates="layer", cascade="all, delete-orphan", order_by="LayerProbe.batch"
    )

    STAT_COLUMNS = (
        "name", "kind", "depth", "parameters", "weight_norm", "grad_norm", "grad_mean_abs",
        "grad_std", "grad_max_abs", "grad_zero_fraction", "grad_nonfinite", "grad_to_weight",
    )

    def as_dict(self) -> dict[str, Any]:
        """The layer as the report's JSON object."""
        return {column: getattr(self, column) for column in self.STAT_COLUMNS}

    def with_probes(self) -> dict[str, Any]:
        """The layer's statistics and, under `probes`, its per-batch rows."""
        return {**self.as_dict(), "probes": [probe.as_dict() for probe in self.probes]}


class LayerProbe(Base):
    """One layer's output and output-gradient statistics for one probe batch (None where not finite)."""

    __tablename__ = "layer_probes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("layer_stats.id", ondelete="CASCADE"), index=True)
    depth: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    numel: Mapped[int] = mapped_column(BigInteger)
    activation_mean: Mapped[float | None] = mapped_column(Float)
    activation_std: Mapped[float | None] = mapped_column(Float)
    activation_zero_fraction: Mapped[float | None] = mapped_column(Float)
    activation_saturated_fraction: Mapped[float | None] = mapped_column(Float)
    output_grad_norm: Mapped[float | None] = mapped_column(Float)
    output_grad_mean_abs: Mapped[float | None] = mapped_column(Float)
    output_grad_max_abs: Mapped[float | None] = mapped_column(Float)
    output_grad_zero_count: Mapped[int | None] = mapped_column(BigInteger)
    output_grad_zero_fraction: Mapped[float | None] = mapped_column(Float)
    output_grad_nonfinite: Mapped[int | None] = mapped_column(BigInteger)

    layer: Mapped[LayerStat] = relationship(back_populates="probes")

    PROBE_COLUMNS = (
        "batch", "seed", "numel", "activation_mean", "activation_std", "activation_zero_fraction",
        "activation_saturated_fraction", "output_grad_norm", "output_grad_mean_abs", "output_grad_max_abs",
        "output_grad_zero_count", "output_grad_zero_fraction", "output_grad_nonfinite",
    )

    def as_dict(self) -> dict[str, Any]:
        """The batch row as plain data, keyed like the engine's per-batch rows."""
        return {column: getattr(self, column) for column in self.PROBE_COLUMNS}
