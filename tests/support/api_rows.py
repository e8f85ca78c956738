"""Rows as the worker stores them, for API tests that need a finished audit without running one, and the keys of
the callers who ask for them."""

from __future__ import annotations

from datetime import timedelta

from models import api_keys
from models import audits as audit_rows

SHA256 = "ab" * 32


def layer(name: str, depth: int, grad_norm: float) -> dict:
    """One layer row as the engine hands it over: all twelve statistics."""
    return {"name": name, "kind": "Linear", "depth": depth, "parameters": 15 - depth * 7,
            "weight_norm": 1.5, "grad_norm": grad_norm, "grad_mean_abs": grad_norm / 10,
            "grad_std": 0.01, "grad_max_abs": grad_norm * 2, "grad_zero_fraction": 0.25,
            "grad_nonfinite": 0, "grad_to_weight": grad_norm / 1.5}


# Deliberately stored out of depth order: the API must sort them.
LAYERS = [layer("2", 1, 0.5), layer("0", 0, 1e-6)]


def claim(services, audit_id: str, worker_id: str = "worker-1") -> None:
    """Claim the audit for a worker, as the task does."""
    with services.sessions() as db_session:
        outcome = audit_rows.claim_audit(db_session=db_session, audit_id=audit_id, worker_id=worker_id,
                                         stale_after=timedelta(seconds=30), max_attempts=3,
                                         owner_is_dead=lambda _owner: False)
    assert outcome == audit_rows.Claim.CLAIMED


def store_result(services, audit_id: str, result: dict, layers: list[dict] = LAYERS) -> None:
    """Claim the audit and store its result and layer rows, as the task does when the engine succeeds."""
    claim(services, audit_id)
    with services.sessions() as db_session:
        assert audit_rows.succeed_audit(db_session=db_session, audit_id=audit_id, worker_id="worker-1",
                                        result=result, layers=layers)


def create_keys(services, names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """A key for each name, the one named ops an admin's: name -> (key id, secret)."""
    made = {}
    with services.sessions() as db_session:
        for name in names:
            key, secret = api_keys.create_key(db_session=db_session, name=name, admin=name == "ops")
            made[name] = (key.id, secret)
    return made


def bearer(keys: dict[str, tuple[str, str]], name: str = "alice") -> dict[str, str]:
    """The header the named key's holder sends."""
    return {"Authorization": f"Bearer {keys[name][1]}"}
