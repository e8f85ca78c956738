"""Audit options: what a user may ask of one audit, validated the same way by the API and the CLI."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gradaudit.webhooks import MAX_URL_CHARS, check_url_form

# The largest dimension options may name: it must fit a signed 64-bit integer wherever it is stored. Whether the
# batch fits in memory is the engine's to say (input_too_large).
MAX_DIM = 2**63 - 1

LossName = Literal["auto", "sum", "mse", "cross_entropy"]
NormalizationMode = Literal["auto", "batch", "running"]
OptimizerName = Literal["sgd", "adam"]


class AuditOptions(BaseModel):
    """Options of one audit; every field has a default so `{}` is a valid request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_shapes: dict[str, list[int]] = Field(default_factory=dict)
    batch_size: int = Field(default=8, ge=1, le=4096)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    loss: LossName = "auto"
    # Synthetic batches probed (seeds seed, seed+1, ...); an uploaded .npz is always the one batch.
    batches: int = Field(default=3, ge=1, le=64)
    # Optional short training before the probe, to see what only appears after a few updates (dying ReLUs,
    # update-to-weight ratio); 0 probes the network exactly as uploaded.
    train_steps: int = Field(default=0, ge=0, le=200)
    optimizer: OptimizerName = "sgd"
    learning_rate: float = Field(default=0.01, gt=0, le=10)
    # BatchNorm statistics during the probe: "auto" uses batch statistics where the running ones are still at
    # their initial values (an untrained network, probed as it trains) and running ones elsewhere; "batch" and
    # "running" force one for every layer.
    normalization: NormalizationMode = "auto"
    # Apply each recommendation to a copy of the network and re-probe it (worker/remedies); off: advice only.
    verify_remedies: bool = True
    # Training steps of the original and each patched copy, compared; None: 20 up to 2M parameters, else 0.
    verify_steps: int | None = Field(default=None, ge=0, le=200)
    # Where the audit's finish is posted, signed (gradaudit/webhooks.py); None: the key's default URL, if any. Only
    # its form is checked here: the API resolves it against the server's settings, the worker again when sending.
    webhook_url: str | None = Field(default=None, max_length=MAX_URL_CHARS)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_form(cls, url: str | None) -> str | None:
        if url is not None:
            check_url_form(url)  # a WebhookRefused is a ValueError: pydantic reports its detail
        return url

    @field_validator("input_shapes")
    @classmethod
    def _positive_dims(cls, shapes: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, dims in shapes.items():
            if not dims or any(not 1 <= d <= MAX_DIM for d in dims):
                raise ValueError(f"input_shapes[{name!r}] must be a non-empty list of positive integers below 2**63")
        return shapes
