"""/v1/audits: submit an artifact, poll its audit, read the report, the per-layer rows, the patched networks and the
webhook deliveries; delete an audit."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, redirect, request, url_for
from pydantic import ValidationError
from werkzeug.datastructures import FileStorage

from api.auth import authenticate, caller, check_active_limit, create_owned_audit
from api.downloads import download_name, network_download
from api.negotiation import html_response, prefers_html
from api.problems import failed_audit_problem, problem
from api.services import services
from api.views import audit_json, page_json
from api.webhooks import check_webhook_option, delivery_json
from gradaudit.artifacts import ArtifactTooLarge
from gradaudit.compare import compare_reports
from gradaudit.formats import NETWORK_FORMATS, UnsupportedFormat, network_format, sniff_format
from gradaudit.html_report import render_html
from gradaudit.options import AuditOptions
from gradaudit.queue import send_audit
from gradaudit.remedies import NoPatchedNetwork, patched_network
from gradaudit.report import build_report, layer_json
from models import audits as audit_rows
from models import deletion
from models import webhooks as webhook_rows
from models.audits import SUCCEEDED

audits = Blueprint("audits", __name__, url_prefix="/v1/audits")
audits.before_request(authenticate)
log = logging.getLogger(__name__)

MAX_PAGE = 100
# Past this, an offset names no page anyone can have: SQLite and PostgreSQL overflow at 2**63.
MAX_OFFSET = 2**31 - 1
MAX_AUDIT_ID = 32  # the width of audits.id
# The options JSON, however it is sent: every row and report carries it.
MAX_OPTIONS_BYTES = 16 * 1024


@audits.post("")
def submit_audit():
    """Store the upload, record a queued audit, send its task: 202 with the audit."""
    check_active_limit()
    upload = _required_upload()
    network_format = _sniffed_format(upload)
    options = _parsed_options()
    check_webhook_option(options)
    inputs_sha256 = _stored_inputs()
    artifact = _store(upload)
    with services().sessions() as db_session:
        audit = create_owned_audit(
            db_session, artifact_sha256=artifact.sha256, artifact_format=network_format,
            artifact_size=artifact.size, filename=(upload.filename or None), inputs_sha256=inputs_sha256,
            options=options.model_dump(),
        )
        _enqueue(db_session, audit.id)
        db_session.refresh(audit)
        if prefers_html():  # the index's upload form: on to the audit's page, which waits for the report
            return redirect(url_for("audits.get_report_html", audit_id=audit.id), 303)
        return audit_json(audit), 202, {"Location": url_for("audits.get_audit", audit_id=audit.id)}


@audits.get("")
def list_audits():
    """A page of audits, newest first."""
    limit, offset = _page_arguments()
    with services().sessions() as db_session:
        page, total = audit_rows.list_audits(db_session=db_session, limit=limit, offset=offset,
                                             owned_by=caller().owned_by)
        return page_json(page, total=total, limit=limit, offset=offset)


@audits.get("/<audit_id>")
def get_audit(audit_id: str):
    """The audit's status, timestamps and, on failure, its error."""
    with services().sessions() as db_session:
        return audit_json(_existing(db_session, audit_id))


@audits.get("/<audit_id>/report")
def get_report(audit_id: str):
    """The report of a succeeded audit (the page, for a request that prefers text/html); 409 while it is still
    queued or running."""
    if prefers_html():
        response = get_report_html(audit_id)
    else:
        with services().sessions() as db_session:
            response = jsonify(_stored_report(db_session, _finished(db_session, audit_id)))
    response.vary.add("Accept")
    return response


@audits.get("/<audit_id>/report.html")
def get_report_html(audit_id: str):
    """The report of a succeeded audit as a self-contained page (gradaudit/html_report.py)."""
    with services().sessions() as db_session:
        report = _stored_report(db_session, _finished(db_session, audit_id))
    return html_response(render_html(report))


@audits.get("/<audit_id>/compare/<base_id>")
def compare_audits(audit_id: str, base_id: str):
    """The audit's report against its baseline's (gradaudit/compare.py): both the caller's, both succeeded."""
    with services().sessions() as db_session:
        for checked in (audit_id, base_id):  # either unknown: 404, before either unfinished is 409
            _existing(db_session, checked)
        audit, baseline = _finished(db_session, audit_id), _finished(db_session, base_id)
        return compare_reports(_stored_report(db_session, audit), _stored_report(db_session, baseline))


def _stored_report(db_session, audit) -> dict:
    layers = audit_rows.list_layers(db_session=db_session, audit_id=audit.id)
    network = {"format": network_format(audit.artifact_format), "sha256": audit.artifact_sha256,
               "parameters": audit.network_parameters, "layers": audit.network_layers}
    return build_report(audit_id=audit.id, network=network, setup=audit.setup,
                        layers=[layer.with_batch_rows() for layer in layers],
                        findings=audit.findings, verdict=audit.verdict, combined=audit.combined)


@audits.get("/<audit_id>/layers")
def get_layers(audit_id: str):
    """The stored per-layer statistics of a succeeded audit."""
    with services().sessions() as db_session:
        _finished(db_session, audit_id)
        layers = audit_rows.list_layers(db_session=db_session, audit_id=audit_id)
        return {"id": audit_id, "layers": [layer_json(layer.with_batch_rows()) for layer in layers]}


@audits.get("/<audit_id>/remedies/<code>/network")
def get_patched_network(audit_id: str, code: str):
    """The patched ONNX network of a verified recommendation (`?finding=` picks the finding), or of the combined
    patch (code `combined`), as a download."""
    with services().sessions() as db_session:
        audit = _finished(db_session, audit_id)
        try:
            network = patched_network(findings=audit.findings, combined=audit.combined, setup=audit.setup,
                                      code=code, finding=request.args.get("finding"))
        except NoPatchedNetwork as missing:
            raise problem("remedy_not_found", str(missing)) from None
        name = download_name(audit.filename, code)
    return network_download(network, name)


@audits.get("/<audit_id>/deliveries")
def get_deliveries(audit_id: str):
    """Every attempt to post the audit's finish to its webhook, first first."""
    with services().sessions() as db_session:
        _existing(db_session, audit_id)
        deliveries = webhook_rows.list_deliveries(db_session=db_session, audit_id=audit_id)
        return {"id": audit_id, "deliveries": [delivery_json(delivery) for delivery in deliveries]}


@audits.delete("/<audit_id>")
def delete_audit(audit_id: str):
    """Delete the audit, its rows and the stored files no other audit uses: 204; 409 while it runs."""
    with services().sessions() as db_session:
        _existing(db_session, audit_id)
        deleted = deletion.delete_audit(db_session=db_session, audit_id=audit_id)
        if deleted is None:
            raise problem("audit_not_finished", "a running audit cannot be deleted; delete it once it has finished",
                          audit_status="running")
        deletion.remove_unused_files(db_session=db_session, store=services().store, deleted=[deleted])
    return "", 204


def _existing(db_session, audit_id: str):
    # PostgreSQL refuses a NUL byte in a query parameter: such an id (like an over-long one) names no audit.
    storable = len(audit_id) <= MAX_AUDIT_ID and "\x00" not in audit_id
    audit = audit_rows.get_audit(db_session=db_session, audit_id=audit_id) if storable else None
    # Another key's audit is answered exactly as a missing one: its existence is not the caller's to learn.
    if audit is None or not caller().may_see(audit):
        raise problem("audit_not_found", f"there is no audit with id {audit_id!r}")
    return audit


def _finished(db_session, audit_id: str):
    audit = _existing(db_session, audit_id)
    if audit.status == SUCCEEDED:
        return audit
    if audit.error_code:
        raise failed_audit_problem(audit.error_code, audit.error_detail, id=audit.id, audit_status=audit.status)
    raise problem("audit_not_finished",
                  f"the audit is {audit.status}; poll {url_for('audits.get_audit', audit_id=audit_id)}",
                  audit_status=audit.status)


def _required_upload() -> FileStorage:
    upload = request.files.get("model")
    if upload is None:
        raise problem("missing_model",
                      "send the ONNX or TorchScript file as the multipart field 'model'")
    return upload


def _sniffed_format(upload: FileStorage) -> str:
    stream = upload.stream
    if not stream.read(1):
        raise problem("empty_upload", "the 'model' field holds no bytes")
    try:
        return sniff_format(stream)
    except UnsupportedFormat as refused:
        raise problem(refused.code, refused.detail, accepted=list(NETWORK_FORMATS)) from None


def _parsed_options() -> AuditOptions:
    raw = _raw_options()
    try:
        return AuditOptions.model_validate_json(raw or "{}")
    except ValidationError as invalid:
        errors = [{"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
                  for error in invalid.errors()]
        raise problem("invalid_options", "see errors", errors=errors) from None


def _raw_options() -> str:
    raw = request.form.get("options")
    if raw is None and "options" in request.files:
        # Read one byte past the cap, never the whole part.
        raw = request.files["options"].stream.read(MAX_OPTIONS_BYTES + 1).decode("utf-8", errors="replace")
    raw = raw or "{}"
    if len(raw.encode("utf-8", errors="replace")) > MAX_OPTIONS_BYTES:
        raise problem("options_too_large", f"options may take at most {MAX_OPTIONS_BYTES} bytes of JSON")
    return raw


def _stored_inputs() -> str | None:
    upload = request.files.get("inputs")
    if upload is None or _left_empty(upload):
        return None
    if upload.stream.read(2) != b"PK":
        raise problem("invalid_inputs",
                      "'inputs' must be a .npz archive (numpy.savez) of arrays named after the network's inputs")
    return _store(upload).sha256


def _left_empty(upload: FileStorage) -> bool:
    """A form's file field the user left empty: a browser sends it with no file name and no bytes."""
    empty = not upload.filename and not upload.stream.read(1)
    upload.stream.seek(0)
    return empty


def _store(upload: FileStorage):
    upload.stream.seek(0)
    settings = services().settings
    try:
        return services().store.save(upload.stream, max_bytes=settings.max_upload_bytes)
    except ArtifactTooLarge:
        raise problem("upload_too_large",
                      f"the limit is {settings.max_upload_mb} MB (GRADAUDIT_MAX_UPLOAD_MB)") from None
    except OSError:
        # Full disk, unwritable or vanished folder: the service's trouble, not the upload's.
        log.exception("the artifact store could not keep an upload")
        raise problem("storage_unavailable", "the artifact store cannot keep uploads now; submit again later") from None


def _enqueue(db_session, audit_id: str) -> None:
    try:
        send_audit(services().celery, audit_id)
    except Exception:
        # The database is the truth: the audit stays queued with enqueued_at unset, and the reconciler in every
        # worker sends it once the broker answers again. The client's 202 holds.
        log.warning("could not send audit %s to the broker; a worker will send it later", audit_id, exc_info=True)
        return
    audit_rows.mark_enqueued(db_session=db_session, audit_id=audit_id)


def _page_arguments() -> tuple[int, int]:
    try:
        limit = int(request.args.get("limit", 20))
        offset = int(request.args.get("offset", 0))
    except ValueError:
        raise problem("invalid_pagination", "limit and offset are integers") from None
    if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
        raise problem("invalid_pagination",
                      f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_OFFSET}")
    return limit, offset
