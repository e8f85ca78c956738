"""Every error is application/problem+json with a stable code, and never leaks internals."""

from __future__ import annotations

import json
import logging

import pytest

from models import audits as audit_rows

PROBLEM_JSON = "application/problem+json"


def problem(response, status: int, code: str) -> dict:
    """The problem+json body, after checking its status and code."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = json.loads(response.get_data())
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"https://gradaudit.dev/problems/{code}"
    return body


def test_unknown_route(client):
    assert problem(client.get("/v2/nothing"), 404, "not_found")["title"] == "Not Found"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("delete", "/v1/audits", {"GET", "POST"}),
    ("put", "/v1/audits/abc", {"GET", "DELETE"}),
    ("post", "/healthz", {"GET"}),
    ("post", "/v1/audits/abc/report", {"GET"}),
])
def test_wrong_method(method, path, allowed, client):
    response = getattr(client, method)(path)
    problem(response, 405, "method_not_allowed")
    # RFC 9110 section 15.5.6: a 405 response must name the allowed methods.
    assert set(response.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == allowed


def boom(**_kwargs):
    raise RuntimeError("connection to secret-db.internal:5432 failed; password=hunter2")


@pytest.mark.parametrize(("function", "method", "path"), [
    ("get_audit", "get", "/v1/audits/abc"),
    ("list_audits", "get", "/v1/audits"),
    ("list_layers", "get", "/v1/audits/abc/layers"),
])
def test_unexpected_exception_is_internal_error(function, method, path, monkeypatch, client, services, caplog):
    if function == "list_layers":
        monkeypatch.setattr(audit_rows, "get_audit", lambda **_: _succeeded_stub())
    monkeypatch.setattr(audit_rows, function, boom)

    with caplog.at_level(logging.ERROR):
        response = getattr(client, method)(path)

    body = problem(response, 500, "internal_error")
    assert body == {"type": "https://gradaudit.dev/problems/internal_error", "title": "Internal Server Error",
                    "status": 500, "code": "internal_error"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret" not in text and "RuntimeError" not in text
    assert "hunter2" in caplog.text  # the log keeps what the client must not see


def _succeeded_stub():
    class Stub:
        status = "succeeded"
        error_code = None

    return Stub()


def test_unexpected_exception_during_submit(monkeypatch, submit, torchscript_bytes, services):
    monkeypatch.setattr(audit_rows, "create_audit", boom)
    body = problem(submit(torchscript_bytes), 500, "internal_error")
    assert "detail" not in body
