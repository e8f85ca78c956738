"""GET /openapi.json: the OpenAPI 3.1 description of every endpoint. The report's schemas are derived from
gradaudit.schema, where its records are defined."""

from __future__ import annotations

from flask import Blueprint
from pydantic import TypeAdapter

from gradaudit.compare import Comparison
from gradaudit.options import AuditOptions
from gradaudit.schema import PHASES, Report

openapi = Blueprint("openapi", __name__)


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(description: str, schema: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_HTML = {"text/html": {"schema": {"type": "string"}}}


def _page(description: str) -> dict:
    return {"description": description, "content": _HTML}


def _problem_or_page(description: str) -> dict:
    """An error that is problem+json, or a page for a request that prefers text/html."""
    return {"description": f"{description} (a page for a request that prefers text/html)",
            "content": {**_problem(description)["content"], **_HTML}}


def _redirect(description: str, *, cookie: bool = False) -> dict:
    headers = {"Location": {"schema": {"type": "string"}}}
    if cookie:
        headers["Set-Cookie"] = {"schema": {"type": "string"}}
    return {"description": description, "headers": headers}


_AUDIT_ID = {"name": "audit_id", "in": "path", "required": True, "schema": {"type": "string"}}

_PATHS = {
    "/v1/audits": {
        "post": {
            "summary": "Submit an ONNX, TorchScript or torch.export (.pt2) network for a gradient audit",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["model"],
                "properties": {
                    "model": {"type": "string", "format": "binary",
                              "description": "ONNX file, TorchScript archive or torch.export archive (.pt2); detected by content"},
                    "options": {"type": "string", "description": "JSON of AuditOptions"},
                    "inputs": {"type": "string", "format": "binary",
                               "description": ".npz batch, arrays named after the network's inputs"},
                }}}}},
            "responses": {
                "202": {**_json("Queued", "Audit"),
                        "headers": {"Location": {"schema": {"type": "string"}}}},
                "303": _redirect("Queued, for a request that prefers text/html (the index's upload form): on to "
                                 "the audit's report.html, which waits for the report"),
                "400": _problem("missing_model, empty_upload, invalid_options or invalid_inputs"),
                "413": _problem("upload_too_large or options_too_large"),
                "415": _problem("unsupported_format (including pickled checkpoints)"),
                "422": _problem("archive_too_large: more members than an archive of one network holds"),
                "503": _problem("storage_unavailable"),
            },
        },
        "get": {
            "summary": "List audits, newest first",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
            "responses": {"200": _json("A page of audits", "AuditPage"), "400": _problem("invalid_pagination")},
        },
    },
    "/v1/audits/{audit_id}": {"get": {
        "summary": "Status of one audit", "parameters": [_AUDIT_ID],
        "responses": {"200": _json("The audit", "Audit"), "404": _problem("audit_not_found")},
    }, "delete": {
        "summary": "Delete an audit, its rows and deliveries, and the stored files no other audit uses",
        "description": "Only the key that made the audit (or an admin key) may: for any other it does not exist.",
        "parameters": [_AUDIT_ID],
        "responses": {"204": {"description": "Deleted"}, "404": _problem("audit_not_found"),
                      "409": _problem("audit_not_finished: a running audit is not deleted")},
    }},
    "/v1/audits/{audit_id}/deliveries": {"get": {
        "summary": "Every attempt to post the audit's finish to its webhook", "parameters": [_AUDIT_ID],
        "responses": {"200": _json("The deliveries, first first", "Deliveries"), "404": _problem("audit_not_found")},
    }},
    "/v1/audits/{audit_id}/report": {"get": {
        "summary": "The report of a succeeded audit",
        "description": "JSON, unless the request's Accept header prefers text/html to application/json (a "
                       "browser's does): then the page report.html serves. Answers carry `Vary: Accept`.",
        "parameters": [_AUDIT_ID],
        "responses": {"200": {"description": "The report",
                              "content": {**_json("", "Report")["content"], **_HTML}},
                      "404": _problem_or_page("audit_not_found"),
                      "409": _problem_or_page("audit_not_finished"),
                      "422": _problem_or_page("the failed audit's own code, e.g. input_shape_required"),
                      "503": _problem_or_page("worker_lost")},
    }},
    "/v1/audits/{audit_id}/report.html": {"get": {
        "summary": "The report of a succeeded audit as a self-contained page",
        "description": "Verdict, findings with their evidence and verified fixes, the gradient-flow chart, "
                       "activation health, the grad-to-weight ratio, the setup and every layer; inline SVG, no "
                       "script, nothing loaded. Errors are pages for a request that prefers text/html (an unfinished "
                       "audit's reloads itself), problem+json otherwise. A browser sends the key as the cookie the "
                       "index's key form set.",
        "parameters": [_AUDIT_ID],
        "responses": {"200": _page("The report"), "401": _problem_or_page("unauthorized or invalid_api_key"),
                      "404": _problem_or_page("audit_not_found"), "409": _problem_or_page("audit_not_finished"),
                      "422": _problem_or_page("the failed audit's own code"),
                      "503": _problem_or_page("worker_lost")},
    }},
    "/v1/audits/{audit_id}/layers": {"get": {
        "summary": "Stored per-layer gradient statistics", "parameters": [_AUDIT_ID],
        "responses": {"200": _json("Layers", "Layers"), "404": _problem("audit_not_found"),
                      "409": _problem("audit_not_finished"), "422": _problem("the failed audit's own code")},
    }},
    "/v1/audits/{audit_id}/remedies/{code}/network": {"get": {
        "summary": "The patched ONNX network of a verified recommendation, or of the combined patch",
        "description": "The first recommendation with this code in report order (`finding` picks the finding); "
                       "code `combined` names the combined patch. Its `network` in the report is this file.",
        "parameters": [_AUDIT_ID,
                       {"name": "code", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "a recommendation's code, or `combined`"},
                       {"name": "finding", "in": "query", "required": False, "schema": {"type": "string"},
                        "description": "the code of the finding whose recommendation is meant"}],
        "responses": {"200": {"description": "The ONNX file",
                              "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                              "content": {"application/octet-stream": {
                                  "schema": {"type": "string", "format": "binary"}}}},
                      "404": _problem("audit_not_found, or remedy_not_found: no such recommendation, or no patched "
                                      "network kept for it (the detail says why)"),
                      "409": _problem("audit_not_finished"),
                      "422": _problem("the failed audit's own code"),
                      "503": _problem("worker_lost, or storage_unavailable: the artifact store does not hold "
                                      "the file")},
    }},
    "/v1/audits/{audit_id}/compare/{base_id}": {"get": {
        "summary": "The audit against its baseline: findings added, removed or changed in severity, per-layer "
                   "metric deltas matched by layer name, and whether it is a regression",
        "description": "A regression is a worse verdict, a new finding at warning or critical, or a finding "
                       "whose severity rose; layer metrics are reported, never judged (README: Compare).",
        "parameters": [_AUDIT_ID, {"name": "base_id", "in": "path", "required": True, "schema": {"type": "string"},
                                   "description": "the baseline audit"}],
        "responses": {"200": _json("The comparison", "Comparison"),
                      "404": _problem("audit_not_found: either audit is unknown or another key's"),
                      "409": _problem("audit_not_finished: either is queued or running"),
                      "422": _problem("the failed audit's own code (its id in `id`)"),
                      "503": _problem("worker_lost")},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics: audits by status and error code, durations by phase, queue depth, workers",
        "description": "Public unless GRADAUDIT_METRICS_TOKEN is set; then `Authorization: Bearer <that token>`.",
        "responses": {"200": {"description": "Prometheus' text format, or OpenMetrics where Accept asks for it",
                              "content": {"text/plain": {"schema": {"type": "string"}},
                                          "application/openmetrics-text": {"schema": {"type": "string"}}}},
                      "401": _problem("unauthorized: GRADAUDIT_METRICS_TOKEN is set and was not sent")},
    }},
    "/healthz": {"get": {
        "summary": "Database, broker and artifact store reachability",
        "responses": {"200": {"description": "Both reachable"}, "503": {"description": "One is not"}},
    }},
    "/readyz": {"get": {
        "summary": "As /healthz, and a worker was seen in the last few heartbeats",
        "responses": {"200": {"description": "Ready to run audits"}, "503": {"description": "Not ready"}},
    }},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    "/": {"get": {
        "summary": "The index: the caller's recent audits and an upload form, or the form that takes an API key",
        "description": "With auth on and no valid key (Bearer or the key cookie), the key form.",
        "responses": {"200": _page("The index or the key form")},
    }},
    "/session": {"post": {
        "summary": "Keep an API key in this browser",
        "description": "The key form's target: a valid key is set as the cookie `gradaudit_key` (HttpOnly, "
                       "SameSite=Strict, for the browser session), which /v1 accepts in place of the Bearer header "
                       "for requests sent by these pages.",
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["api_key"], "properties": {"api_key": {"type": "string"}}}}}},
        "responses": {"303": _redirect("Kept: on to the index", cookie=True),
                      "401": _page("The key is unknown or revoked: the form again"),
                      "403": _problem_or_page("cross_site_request: another site sent the form")},
    }},
    "/session/end": {"post": {
        "summary": "Forget the API key this browser keeps",
        "responses": {"303": _redirect("Forgotten: on to the index", cookie=True),
                      "403": _problem_or_page("cross_site_request: another site sent the form")},
    }},
}

def _record_schemas(record, name: str) -> dict:
    """The JSON schemas of a record in gradaudit and of those it holds, each under its own name."""
    document = TypeAdapter(record).json_schema(ref_template=_REF)
    return {**document.pop("$defs", {}), name: document}


_REF = "#/components/schemas/{model}"

_SCHEMAS = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "code": {"type": "string"}, "detail": {"type": "string"}}},
    "Audit": {"type": "object", "required": ["id", "status"], "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed"]},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "attempts": {"type": "integer"},
        "phase": {"enum": [*PHASES, None], "description": "the phase the audit is in (or was in when it ended)"},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                     "description": "how far along the audit is, 0 to 1; never goes back; 1 once it succeeded"},
        "verdict": {"enum": ["healthy", "warning", "critical", None]},
        "error": {"type": "object", "properties": {"code": {"type": "string"}, "detail": {"type": "string"}}}}},
    "AuditPage": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Audit"}},
        "total": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"},
        "next": {"type": ["string", "null"]}}},
    "Deliveries": {"type": "object", "required": ["id", "deliveries"], "properties": {
        "id": {"type": "string"},
        "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}}},
    "Delivery": {"type": "object", "required": ["attempt", "url", "status"], "properties": {
        "attempt": {"type": "integer", "minimum": 1}, "url": {"type": "string"},
        "status": {"enum": ["delivered", "failed", "refused"]},
        "response_status": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "delivered_at": {"type": ["string", "null"], "format": "date-time"}}},
    "Layers": {"type": "object", "properties": {
        "id": {"type": "string"}, "layers": {"type": "array", "items": {"$ref": "#/components/schemas/Layer"}}}},
    **_record_schemas(Report, "Report"),
    **_record_schemas(Comparison, "Comparison"),
    "Layer": {"$ref": "#/components/schemas/ReportLayer"},
    "AuditOptions": AuditOptions.model_json_schema(),
}

def _secured(paths: dict) -> dict:
    """Every /v1 operation answers 401 without a valid key (POST also 429 past the key's limit); the rest are
    public."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            if not path.startswith("/v1/"):
                operation["security"] = []
                continue
            operation["responses"].setdefault("401", _problem("unauthorized (no Bearer key) or invalid_api_key"))
            if method in ("post", "put", "patch", "delete"):
                operation["responses"]["403"] = _problem_or_page(
                    "cross_site_request: a browser says another site sent it, or the key cookie came without "
                    "Origin or Sec-Fetch-Site")
            if method == "post":
                operation["responses"]["429"] = {
                    **_problem("too_many_active_audits: the key's queued and running audits are at its limit"),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    return paths


DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "gradaudit", "version": "1",
             "description": "Audits the gradients of ONNX and TorchScript networks. Errors are "
                            "application/problem+json; a request that prefers text/html gets them as pages."},
    "paths": _secured(_PATHS),
    "security": [{"apiKey": []}],
    "components": {"schemas": _SCHEMAS,
                   "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
}


@openapi.get("/openapi.json")
def openapi_document():
    """The OpenAPI document."""
    return DOCUMENT
