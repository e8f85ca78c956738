"""The error catalogue is the one source of codes: the source uses only its codes, the README lists exactly them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gradaudit.archives import ArchiveRefused
from gradaudit.errors import ERRORS, AuditError, error_code, failed_audit_status

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("api", "cli", "gradaudit", "models", "worker")
# The callable, and where its code goes: a position or the `code` keyword.
CODE_ARGUMENT = {"AuditError": 0, "ArchiveRefused": 0, "problem": 0, "Problem": 1, "fail_audit": "code"}


def _called_name(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)


def _code_argument(call: ast.Call, where: int | str) -> ast.expr | None:
    if isinstance(where, int):
        return call.args[where] if len(call.args) > where else None
    return next((keyword.value for keyword in call.keywords if keyword.arg == where), None)


def source_codes() -> dict[str, list[str]]:
    """Every string literal passed as a code in the source, with where it was passed."""
    found: dict[str, list[str]] = {}
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(call, ast.Call) and _called_name(call) in CODE_ARGUMENT:
                    code = _code_argument(call, CODE_ARGUMENT[_called_name(call)])
                    if isinstance(code, ast.Constant) and isinstance(code.value, str):
                        found.setdefault(code.value, []).append(f"{path.relative_to(ROOT)}:{call.lineno}")
    return found


def readme_table() -> dict[str, str]:
    """The README's error table: code -> its status cell."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    header = text.index("| code | status | when |")
    rows: dict[str, str] = {}
    for line in text[header:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        codes, status = [cell.strip() for cell in line.strip("|").split("|")][:2]
        for code in re.findall(r"`([a-z_]+)`", codes):
            assert code not in rows, f"{code} is listed twice in the README's error table"
            rows[code] = status
    return rows


def test_the_scan_sees_the_codes_of_every_layer():
    found = source_codes()
    for code in ("unsupported_format", "invalid_onnx", "unsafe_archive", "audit_not_found", "upload_too_large"):
        assert code in found


def test_every_code_in_the_source_is_catalogued():
    unknown = {code: where for code, where in source_codes().items() if code not in ERRORS}
    assert not unknown


def test_codes_named_outside_calls_are_catalogued():
    from api.problems import _HTTP_CODES
    from models.audits import WORKER_LOST

    assert set(_HTTP_CODES.values()) | {WORKER_LOST} <= set(ERRORS)
    assert all(ERRORS[code].status == status for status, code in _HTTP_CODES.items())


def test_readme_lists_exactly_the_catalogue_with_its_statuses():
    listed = {code: str(entry.status) if entry.status is not None else "its own" for code, entry in ERRORS.items()}
    assert readme_table() == listed


def test_every_entry_has_a_status_and_a_title():
    for code, entry in ERRORS.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code)
        assert entry.title and (entry.status is None or 400 <= entry.status < 600)


@pytest.mark.parametrize("make", [lambda: AuditError("invalid_onx", "typo"), lambda: ArchiveRefused("bad_zip", "x"),
                                  lambda: error_code("no_such_code")])
def test_an_unknown_code_raises(make):
    with pytest.raises(ValueError, match="not a catalogued error code"):
        make()


def test_a_known_code_is_kept_as_given():
    error = AuditError("invalid_onnx", "graph has no nodes")
    assert (error.code, error.detail) == ("invalid_onnx", "graph has no nodes")
    assert str(error) == "invalid_onnx: graph has no nodes"


@pytest.mark.parametrize(("code", "status"), [
    ("input_shape_required", 422), ("invalid_inputs", 422), ("unsupported_format", 422),
    ("time_limit_exceeded", 422), ("worker_lost", 503), ("broker_unavailable", 503), ("internal_error", 500),
    ("a_code_no_longer_catalogued", 422),
])
def test_failed_audit_status(code, status):
    assert failed_audit_status(code) == status
