"""Every stable error code, defined once with its HTTP status and title, and the exception the engine raises.

Plain Python (no Flask, no torch): the engine, the worker, the API and the CLI all read it.
"""

from __future__ import annotations

from typing import NamedTuple


class ErrorCode(NamedTuple):
    """A code's HTTP status (None: the status of the HTTP error it stands for) and its problem title."""

    status: int | None
    title: str


ERRORS: dict[str, ErrorCode] = {
    # The request is refused before an audit exists.
    "bad_request": ErrorCode(400, "Bad Request"),
    "missing_model": ErrorCode(400, "No network uploaded"),
    "empty_upload": ErrorCode(400, "The upload is empty"),
    "invalid_options": ErrorCode(400, "Invalid options"),
    "invalid_inputs": ErrorCode(400, "Invalid inputs"),
    "invalid_pagination": ErrorCode(400, "Invalid pagination"),
    "unauthorized": ErrorCode(401, "API key required"),
    "invalid_api_key": ErrorCode(401, "Invalid API key"),
    "cross_site_request": ErrorCode(403, "Cross-site request refused"),
    "not_found": ErrorCode(404, "Not Found"),
    "audit_not_found": ErrorCode(404, "No such audit"),
    "remedy_not_found": ErrorCode(404, "No such patched network"),
    "method_not_allowed": ErrorCode(405, "Method Not Allowed"),
    "audit_not_finished": ErrorCode(409, "The audit has not finished"),
    "upload_too_large": ErrorCode(413, "Upload too large"),
    "options_too_large": ErrorCode(413, "Options too large"),
    "unsupported_format": ErrorCode(415, "Unsupported network format"),
    "unsupported_media_type": ErrorCode(415, "Unsupported Media Type"),
    "too_many_active_audits": ErrorCode(429, "Too many active audits"),
    "http_error": ErrorCode(None, "HTTP error"),
    # The audit ran and failed on the upload: its report answers 422.
    "invalid_onnx": ErrorCode(422, "Not a readable ONNX file"),
    "invalid_torchscript": ErrorCode(422, "Not a loadable TorchScript archive"),
    "invalid_exported_program": ErrorCode(422, "Not a loadable torch.export archive"),
    "unsupported_operator": ErrorCode(422, "Unsupported operator"),
    "unsupported_opset": ErrorCode(422, "Unsupported opset"),
    "unsafe_operator": ErrorCode(422, "Operator outside the allowlist"),
    "conversion_failed": ErrorCode(422, "ONNX conversion failed"),
    "conversion_mismatch": ErrorCode(422, "The converted network disagrees with onnxruntime"),
    "external_data_missing": ErrorCode(422, "External weight file missing"),
    "external_data_unsafe": ErrorCode(422, "Unsafe external data reference"),
    "external_data_invalid": ErrorCode(422, "Invalid external data reference"),
    "invalid_archive": ErrorCode(422, "Invalid archive"),
    "unsafe_archive": ErrorCode(422, "Unsafe archive member"),
    "archive_too_large": ErrorCode(422, "Archive too large"),
    "input_shape_required": ErrorCode(422, "Input shape required"),
    "input_shape_mismatch": ErrorCode(422, "Input shape mismatch"),
    "unknown_input": ErrorCode(422, "Unknown input name"),
    "forward_failed": ErrorCode(422, "Forward pass failed"),
    "backward_failed": ErrorCode(422, "Backward pass failed"),
    "no_differentiable_output": ErrorCode(422, "No differentiable output"),
    "loss_not_applicable": ErrorCode(422, "Loss not applicable"),
    "device_unavailable": ErrorCode(422, "Device unavailable"),
    "time_limit_exceeded": ErrorCode(422, "Time limit exceeded"),
    "out_of_memory": ErrorCode(422, "Out of memory"),
    "resource_limit_exceeded": ErrorCode(422, "Resource limit exceeded"),
    "audit_crashed": ErrorCode(422, "The audit's process crashed"),
    "input_too_large": ErrorCode(422, "Input too large"),
    "artifact_missing": ErrorCode(422, "Uploaded file missing"),
    # The service's own trouble.
    "internal_error": ErrorCode(500, "Internal Server Error"),
    "broker_unavailable": ErrorCode(503, "Task queue unavailable"),
    "storage_unavailable": ErrorCode(503, "Artifact store unavailable"),
    "worker_lost": ErrorCode(503, "Worker lost"),
}

# A failed audit's report answers 422 unless the failure is the service's own (5xx): the request for the
# report was fine, the upload could not be audited. So `invalid_inputs` is 400 at submit, 422 from the worker.
UNPROCESSABLE = 422


def error_code(code: str) -> ErrorCode:
    """The catalogue entry for `code`; ValueError for a code not in the catalogue, so a typo fails a test."""
    try:
        return ERRORS[code]
    except KeyError:
        raise ValueError(f"{code!r} is not a catalogued error code (gradaudit/errors.py)") from None


def failed_audit_status(code: str) -> int:
    """The status a failed audit's report answers with: the service's own trouble keeps its 5xx, the rest 422."""
    entry = ERRORS.get(code)  # a code stored before it left the catalogue still answers
    status = entry.status if entry else None
    return status if status is not None and status >= 500 else UNPROCESSABLE


class AuditError(Exception):
    """A coded, user-facing reason an audit cannot proceed."""

    def __init__(self, code: str, detail: str):
        error_code(code)
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A user-facing one-line reason for an exception: its type and the telling line, no traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("The following operation failed"):
        # TorchScript interpreter errors put a traceback first and "SomeError: message" last.
        return lines[-1][:limit]
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:limit]
