"""Settings: every environment variable gradaudit reads, read here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

# Environment variable -> settings field. The README's configuration table mirrors this.
ENVIRONMENT_VARIABLES = {
    "GRADAUDIT_ENV": "env",
    "GRADAUDIT_DATA_DIR": "data_dir",
    "DATABASE_URL": "database_url",
    "CELERY_BROKER_URL": "broker_url",
    "GRADAUDIT_ARTIFACT_DIR": "artifact_dir",
    "GRADAUDIT_MAX_UPLOAD_MB": "max_upload_mb",
    "GRADAUDIT_MAX_EXTRACTED_MB": "max_extracted_mb",
    "GRADAUDIT_SOFT_TIME_LIMIT_S": "soft_time_limit_s",
    "GRADAUDIT_HARD_TIME_LIMIT_S": "hard_time_limit_s",
    "GRADAUDIT_MAX_ATTEMPTS": "max_attempts",
    "GRADAUDIT_HEARTBEAT_S": "heartbeat_s",
    "GRADAUDIT_STALE_AFTER_S": "stale_after_s",
    "GRADAUDIT_DEVICE": "device",
    "GRADAUDIT_AUDIT_MEMORY_MB": "audit_memory_mb",
    "GRADAUDIT_WORKER_CONCURRENCY": "worker_concurrency",
    "GRADAUDIT_MAX_VERIFIED_REMEDIES": "max_verified_remedies",
    "GRADAUDIT_SANDBOX_USER": "sandbox_user",
    "GRADAUDIT_AUTH": "auth",
    "GRADAUDIT_MAX_ACTIVE_AUDITS_PER_KEY": "max_active_audits_per_key",
    "GRADAUDIT_WEBHOOK_SECRET": "webhook_secret",
    "GRADAUDIT_WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
    "GRADAUDIT_WEBHOOK_MAX_ATTEMPTS": "webhook_max_attempts",
    "GRADAUDIT_WEBHOOK_BACKOFF_S": "webhook_backoff_s",
    "GRADAUDIT_METRICS_TOKEN": "metrics_token",
    "GRADAUDIT_RETENTION_DAYS": "retention_days",
}


class Settings(BaseModel):
    """The whole configuration of one gradaudit process."""

    model_config = {"frozen": True}

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("gradaudit-data")
    database_url: str | None = None
    broker_url: str | None = None
    artifact_dir: Path | None = None
    max_upload_mb: int = Field(default=512, gt=0)
    max_extracted_mb: int = Field(default=4096, gt=0)
    soft_time_limit_s: int = Field(default=900, gt=0)
    hard_time_limit_s: int = Field(default=960, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    heartbeat_s: float = Field(default=5.0, gt=0)
    stale_after_s: float = Field(default=30.0, gt=0)
    device: str = "auto"
    audit_memory_mb: int | None = Field(default=None, gt=0)  # None: half the machine's memory
    worker_concurrency: int | None = Field(default=None, ge=1)  # None: worker/capacity.py decides
    max_verified_remedies: int = Field(default=12, ge=0, le=100)  # recommendations re-probed per audit
    sandbox_user: str = "gradaudit-sandbox"
    # None: on, except where `gradaudit serve` binds to loopback only (it then sets False and says so).
    auth: bool | None = None
    max_active_audits_per_key: int = Field(default=10, ge=1)
    # Each key's webhook signing secret is derived from this one (gradaudit/webhooks.py); None: no webhooks.
    webhook_secret: str | None = Field(default=None, min_length=16)
    # Webhooks to loopback, private, link-local... addresses: off, so a webhook cannot reach the service's own network.
    webhook_allow_private: bool = False
    webhook_max_attempts: int = Field(default=8, ge=1, le=20)
    webhook_backoff_s: float = Field(default=10.0, gt=0)  # before the first retry; doubles after each
    metrics_token: str | None = None  # None: /metrics is public, as /healthz; else it needs this Bearer token
    retention_days: float | None = Field(default=None, gt=0)  # None: finished audits are kept forever

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.hard_time_limit_s <= self.soft_time_limit_s:
            raise ValueError("GRADAUDIT_HARD_TIME_LIMIT_S must exceed GRADAUDIT_SOFT_TIME_LIMIT_S")
        if self.stale_after_s <= 2 * self.heartbeat_s:
            raise ValueError("GRADAUDIT_STALE_AFTER_S must exceed twice GRADAUDIT_HEARTBEAT_S")
        if self.env == "production":
            # Outside development, a forgotten variable must not silently fall back to SQLite
            # in a container's ephemeral filesystem or to no broker at all.
            for name, value in (("DATABASE_URL", self.database_url), ("CELERY_BROKER_URL", self.broker_url)):
                if not value:
                    raise ValueError(f"{name} must be set when GRADAUDIT_ENV=production")
            if self.auth is False:
                raise ValueError("GRADAUDIT_AUTH cannot be off when GRADAUDIT_ENV=production")
        return self

    @property
    def auth_required(self) -> bool:
        """Whether requests must carry an API key: always, unless auth was turned off."""
        return self.auth is not False

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gradaudit.db').resolve()}"

    @property
    def artifacts_path(self) -> Path:
        """The folder uploads are stored in, keyed by sha256."""
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def max_upload_bytes(self) -> int:
        """The largest accepted request body."""
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_extracted_bytes(self) -> int:
        """The most an uploaded archive may extract to."""
        return self.max_extracted_mb * 1024 * 1024

    @property
    def audit_memory_bytes(self) -> int:
        """The memory one audit's child process may add: the setting, or half the machine's memory."""
        if self.audit_memory_mb:
            return self.audit_memory_mb * 1024 * 1024
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2

    def work_dir_for(self, audit_id: str) -> Path:
        """The audit's own scratch folder, where an uploaded archive is extracted."""
        return self.data_dir / "work" / audit_id

    @property
    def visibility_timeout_s(self) -> int:
        """How long Redis keeps an unacked message before restoring it: past the hard limit."""
        return self.hard_time_limit_s + 60


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build settings from an environment mapping (default: the process environment)."""
    environ = os.environ if environ is None else environ
    values = {field: environ[name] for name, field in ENVIRONMENT_VARIABLES.items() if environ.get(name)}
    values.update(overrides)
    return Settings(**values)


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment for a child process that must see these exact settings."""
    environ = dict(os.environ)
    for name, field in ENVIRONMENT_VARIABLES.items():
        value = getattr(settings, field)
        if value is not None:
            environ[name] = str(value)
    environ["DATABASE_URL"] = settings.sqlalchemy_url
    return environ
