"""The API's read and write paths on each supported database, SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from api import create_app
from models import audits as audit_rows

# A layer stored without per-batch rows reports its output statistics as null.
UNMEASURED = {"output_grad": None, "activation": None}
LAYER = {"name": "0", "kind": "Linear", "depth": 0, "parameters": 15, "weight_norm": 1.0, "grad_norm": 0.5,
         "grad_mean_abs": 0.1, "grad_std": 0.1, "grad_max_abs": 0.9, "grad_zero_fraction": 0.0,
         "grad_nonfinite": 0, "grad_to_weight": 0.5}
RESULT = {"network": {"format": "torchscript", "parameters": 15, "layers": 1}, "setup": {"device": "cpu"},
          "findings": [], "verdict": "healthy"}


@pytest.fixture
def app_on(make_settings, database_url):
    """A fresh app on a migrated database of each kind."""
    return create_app(make_settings(database_url=database_url))


def finish(app, audit_id: str) -> None:
    """Claim and succeed the audit with a fabricated result."""
    with app.extensions["gradaudit"].sessions() as db_session:
        audit_rows.claim_audit(db_session=db_session, audit_id=audit_id, worker_id="w", max_attempts=3,
                               stale_after=timedelta(seconds=30), owner_is_dead=lambda _: False)
    with app.extensions["gradaudit"].sessions() as db_session:
        assert audit_rows.succeed_audit(db_session=db_session, audit_id=audit_id, worker_id="w", result=RESULT,
                                        layers=[LAYER])


def test_submit_list_and_report(app_on, torchscript_bytes):
    client = app_on.test_client()
    form = {"model": (io.BytesIO(torchscript_bytes), "net.pt")}
    queued = client.post("/v1/audits", data=form, content_type="multipart/form-data").get_json()
    finish(app_on, queued["id"])

    page = client.get("/v1/audits").get_json()
    assert [item["id"] for item in page["items"]] == [queued["id"]]
    assert page["items"][0]["created_at"] == queued["created_at"]
    assert page["items"][0]["created_at"].endswith("Z") and "+" not in page["items"][0]["created_at"]
    report = client.get(f"/v1/audits/{queued['id']}/report").get_json()
    assert (report["verdict"], report["layers"], report["network"]["parameters"]) == ("healthy", [{**LAYER, **UNMEASURED}], 15)


@pytest.mark.parametrize("audit_id", ["%00", "x" * 200, "%E2%98%83", "0" * 32])
def test_odd_ids_are_not_found(app_on, audit_id):
    for suffix in ("", "/report", "/layers"):
        response = app_on.test_client().get(f"/v1/audits/{audit_id}{suffix}")
        assert response.status_code == 404, (suffix, response.get_data(as_text=True))
        assert response.get_json(force=True)["code"] == "audit_not_found"
