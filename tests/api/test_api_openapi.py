"""GET /openapi.json: the document describes exactly the routes the app serves."""

from __future__ import annotations

import re

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def registered_operations(app) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) for every route but static files."""
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        operations |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    return operations


def test_document_lists_every_registered_route(app, client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    described = {(path, method) for path, item in document["paths"].items() for method in item}

    assert described == registered_operations(app)


def test_document_header_and_schemas(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "gradaudit"
    schemas = document["components"]["schemas"]
    assert {"Problem", "Audit", "AuditPage", "Layer", "Layers", "Report", "AuditOptions"} <= set(schemas)
    assert schemas["AuditOptions"]["additionalProperties"] is False


def references(node) -> set[str]:
    """Every $ref string anywhere in a JSON document."""
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(references(value) for value in node))
    return set()


def test_every_reference_resolves(client):
    document = client.get("/openapi.json").get_json()
    found = references(document["paths"]) | references(document["components"]["schemas"])
    schema_refs = {ref for ref in found if ref.startswith("#/components/schemas/")}
    assert schema_refs
    assert {ref.rsplit("/", 1)[1] for ref in schema_refs} <= set(document["components"]["schemas"])


def test_layer_schema_names_the_twelve_statistics_and_the_output_statistics(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    layer = schemas[schemas["Layer"]["$ref"].rsplit("/", 1)[1]]
    assert set(layer["properties"]) == {
        "name", "kind", "depth", "parameters", "weight_norm", "grad_norm", "grad_mean_abs", "grad_std",
        "grad_max_abs", "grad_zero_fraction", "grad_nonfinite", "grad_to_weight", "output_grad", "activation"}


def test_report_schemas_are_derived_from_the_records(client):
    from gradaudit.schema import BATCH_ROW_FIELDS, LAYER_FIELDS

    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert set(LAYER_FIELDS) < set(schemas["ReportLayer"]["properties"])
    assert {"device", "loss", "onnxruntime_max_abs_diff", "training"} <= set(schemas["Setup"]["properties"])
    assert set(schemas["Finding"]["required"]) >= {"code", "severity", "layers", "evidence", "recommendations"}
    activation_fields = {k[len("activation_"):] for k in BATCH_ROW_FIELDS if k.startswith("activation_")}
    assert activation_fields <= set(schemas["ActivationBatch"]["properties"])


def test_report_schemas_carry_the_verified_remedies(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert set(schemas["Recommendation"]["required"]) == {"code", "text"}  # older reports carry only these
    assert {"layers", "patch", "verification", "network"} <= set(schemas["Recommendation"]["properties"])
    assert set(schemas["Verification"]["properties"]["status"]["enum"]) == {
        "resolved", "improved", "no_effect", "worse", "not_applicable"}
    assert "combined" in schemas["Report"]["required"] and "remedies" in schemas["Setup"]["properties"]
    assert set(schemas["CombinedPatch"]["required"]) == {"recommendations", "skipped", "patch", "verification"}
    download = document["paths"]["/v1/audits/{audit_id}/remedies/{code}/network"]["get"]["responses"]
    assert set(download["200"]["content"]) == {"application/octet-stream"}
