"""GET /openapi.json: the OpenAPI 3.1 description of every endpoint."""

from __future__ import annotations

from flask import Blueprint

from gradaudit.options import AuditOptions

openapi = Blueprint("openapi", __name__)


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(description: str, schema: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_AUDIT_ID = {"name": "audit_id", "in": "path", "required": True, "schema": {"type": "string"}}

_PATHS = {
    "/v1/audits": {
        "post": {
            "summary": "Submit an ONNX or TorchScript network for a gradient audit",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["model"],
                "properties": {
                    "model": {"type": "string", "format": "binary",
                              "description": "ONNX file or TorchScript archive; detected by content"},
                    "options": {"type": "string", "description": "JSON of AuditOptions"},
                    "inputs": {"type": "string", "format": "binary",
                               "description": ".npz batch, arrays named after the network's inputs"},
                }}}}},
            "responses": {
                "202": {**_json("Queued", "Audit"),
                        "headers": {"Location": {"schema": {"type": "string"}}}},
                "400": _problem("missing_model, empty_upload, invalid_options or invalid_inputs"),
                "413": _problem("upload_too_large"),
                "415": _problem("unsupported_format (including pickled checkpoints)"),
                "503": _problem("broker_unavailable"),
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
    }},
    "/v1/audits/{audit_id}/report": {"get": {
        "summary": "The report of a succeeded audit", "parameters": [_AUDIT_ID],
        "responses": {"200": _json("The report", "Report"), "404": _problem("audit_not_found"),
                      "409": _problem("audit_not_finished"),
                      "422": _problem("the failed audit's own code, e.g. input_shape_required"),
                      "503": _problem("worker_lost")},
    }},
    "/v1/audits/{audit_id}/layers": {"get": {
        "summary": "Stored per-layer gradient statistics", "parameters": [_AUDIT_ID],
        "responses": {"200": _json("Layers", "Layers"), "404": _problem("audit_not_found"),
                      "409": _problem("audit_not_finished"), "422": _problem("the failed audit's own code")},
    }},
    "/healthz": {"get": {
        "summary": "Database and broker reachability",
        "responses": {"200": {"description": "Both reachable"}, "503": {"description": "One is not"}},
    }},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
}

def _numbers(*keys: str, kind: str = "number") -> dict:
    return {key: {"type": [kind, "null"]} for key in keys}


_PER_BATCH = {"batch": {"type": "integer"}, "seed": {"type": "integer"}, "numel": {"type": "integer"}}

_OUTPUT_GRAD = {"type": ["object", "null"], "description": (
    "Gradient of the loss with respect to the layer's output, over the probe batches: norm is the root mean "
    "square of the per-batch L2 norms, mean_abs their mean, max_abs the largest, counts are summed; "
    "null where backward never reached the output. A statistic is null where it is not finite."),
    "properties": {
        **_numbers("norm", "mean_abs", "max_abs", "zero_fraction"),
        **_numbers("zero_count", "nonfinite", kind="integer"),
        "batches": {"type": "array", "items": {"type": "object", "properties": {
            **_PER_BATCH, **_numbers("norm", "mean_abs", "max_abs", "zero_fraction"),
            **_numbers("zero_count", "nonfinite", kind="integer")}}},
    }}

_ACTIVATION = {"type": ["object", "null"], "description": (
    "The layer's forward output over every element of every probe batch: mean, std, share exactly zero, "
    "and for Sigmoid/Tanh the share where the derivative is below 1% of its peak (setup.saturation), "
    "else null; null where the output was not observed."),
    "properties": {
        **_numbers("mean", "std", "zero_fraction", "saturated_fraction"),
        "batches": {"type": "array", "items": {"type": "object", "properties": {
            **_PER_BATCH, **_numbers("mean", "std", "zero_fraction", "saturated_fraction")}}},
    }}

_LAYER = {"type": "object", "properties": {
    **{key: {"type": "string"} for key in ("name", "kind")},
    **{key: {"type": "integer"} for key in ("depth", "parameters", "grad_nonfinite")},
    **{key: {"type": "number"} for key in ("weight_norm", "grad_norm", "grad_mean_abs", "grad_std",
                                           "grad_max_abs", "grad_zero_fraction", "grad_to_weight")},
    "output_grad": _OUTPUT_GRAD,
    "activation": _ACTIVATION,
}}

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
        "verdict": {"enum": ["healthy", "warning", "critical", None]},
        "error": {"type": "object", "properties": {"code": {"type": "string"}, "detail": {"type": "string"}}}}},
    "AuditPage": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Audit"}},
        "total": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"},
        "next": {"type": ["string", "null"]}}},
    "Layer": _LAYER,
    "Layers": {"type": "object", "properties": {
        "id": {"type": "string"}, "layers": {"type": "array", "items": {"$ref": "#/components/schemas/Layer"}}}},
    "Report": {"type": "object", "required": ["id", "status", "network", "setup", "layers", "findings", "verdict"],
               "properties": {
                   "id": {"type": "string"}, "status": {"const": "succeeded"},
                   "network": {"type": "object"}, "setup": {"type": "object"},
                   "layers": {"type": "array", "items": {"$ref": "#/components/schemas/Layer"}},
                   "findings": {"type": "array", "items": {"type": "object"}},
                   "verdict": {"enum": ["healthy", "warning", "critical"]}}},
    "AuditOptions": AuditOptions.model_json_schema(),
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "gradaudit", "version": "1",
             "description": "Audits the gradients of ONNX and TorchScript networks."},
    "paths": _PATHS,
    "components": {"schemas": _SCHEMAS},
}


@openapi.get("/openapi.json")
def openapi_document():
    """The OpenAPI document."""
    return DOCUMENT
