"""layer_probes on SQLite and PostgreSQL: per-batch rows written with their layer, read back, deleted with it."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from models import audits as audit_rows
from models.tables import Audit, LayerBatchRow
from tests.support.db import LAYER, claim, new_audit, succeed


def probe_row(batch: int, **changes) -> dict:
    """One batch of a layer's output statistics, as the engine hands it over."""
    row = {"batch": batch, "seed": 7 + batch, "numel": 64, "activation_mean": 0.25, "activation_std": 1.5,
           "activation_zero_fraction": 0.5, "activation_saturated_fraction": None, "output_grad_norm": 0.125,
           "output_grad_mean_abs": 0.01, "output_grad_max_abs": 0.5, "output_grad_zero_count": 32,
           "output_grad_zero_fraction": 0.5, "output_grad_nonfinite": 0}
    return row | changes


def stored(db, audit_id: str) -> list[dict]:
    """Each stored layer with its per-batch rows."""
    return [layer.with_batch_rows() for layer in db.call(audit_rows.list_layers, audit_id=audit_id)]


def test_probe_rows_are_written_and_read_back_in_batch_order(db):
    audit = new_audit(db)
    claim(db, audit.id)
    relu = {**LAYER, "name": "relu", "kind": "Relu", "depth": 1, "parameters": 0,
            "batch_rows": [probe_row(1, output_grad_norm=None), probe_row(0, output_grad_zero_count=2**40)]}
    fc = {**LAYER, "batch_rows": [probe_row(0, activation_saturated_fraction=0.75)]}
    assert succeed(db, audit.id, layers=[fc, relu])

    layers = stored(db, audit.id)
    assert [layer["name"] for layer in layers] == ["fc", "relu"]
    assert layers[0]["batch_rows"] == [probe_row(0, activation_saturated_fraction=0.75)]
    assert layers[1]["batch_rows"] == [probe_row(0, output_grad_zero_count=2**40), probe_row(1, output_grad_norm=None)]
    assert {k: v for k, v in layers[1].items() if k != "batch_rows"} == {k: v for k, v in relu.items() if k != "batch_rows"}


def test_layers_without_probes_store_none(db):
    audit = new_audit(db)
    claim(db, audit.id)
    assert succeed(db, audit.id, layers=[LAYER])
    assert stored(db, audit.id)[0]["batch_rows"] == []


def test_a_refused_success_writes_no_probe_rows(db):
    audit = new_audit(db)
    claim(db, audit.id)
    assert not succeed(db, audit.id, worker_id="someone-else", layers=[{**LAYER, "batch_rows": [probe_row(0)]}])
    with db.sessions() as db_session:
        assert db_session.scalar(select(func.count()).select_from(LayerBatchRow)) == 0


def test_probe_rows_go_with_their_audit(db):
    audit = new_audit(db)
    claim(db, audit.id)
    assert succeed(db, audit.id, layers=[{**LAYER, "batch_rows": [probe_row(0), probe_row(1)]}])
    with db.sessions() as db_session:
        db_session.execute(delete(Audit).where(Audit.id == audit.id))
        db_session.commit()
        assert db_session.scalar(select(func.count()).select_from(LayerBatchRow)) == 0
