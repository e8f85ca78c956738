"""Run an audit in this process, for `gradaudit audit`: no server, and the same path the worker takes
(worker.runner.run_artifact), so the same error codes and the same report."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from gradaudit.errors import AuditError
from gradaudit.formats import UnsupportedFormat, sniff_format
from gradaudit.options import AuditOptions
from gradaudit.report import build_report
from gradaudit.settings import Settings


def audit_file(
    path: Path, *, options: AuditOptions, inputs_path: Path | None, settings: Settings
) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """Audit a file; return (report, None) or (None, (code, detail))."""
    from worker.engine.audit import audit_network  # torch loads here, for this command only
    from worker.runner import run_artifact

    try:
        with path.open("rb") as stream:
            artifact_format = sniff_format(stream)
    except UnsupportedFormat as refused:
        return None, ("unsupported_format", refused.detail)
    with tempfile.TemporaryDirectory(prefix="gradaudit-") as scratch:
        outcome = run_artifact(path, artifact_format, options=options, inputs_path=inputs_path, settings=settings,
                               work_dir=Path(scratch) / "network", run_engine=audit_network,
                               data_dir=path.resolve().parent,  # torch's exporters write NAME.onnx.data beside it
                               drop_user=False)  # one's own file, as oneself: the sandbox's other walls stay
    if isinstance(outcome, AuditError):
        return None, (outcome.code, outcome.detail)
    network = {**outcome.network, "sha256": _sha256(path)}
    report = build_report(audit_id=None, network=network, setup=outcome.setup,
                          layers=[layer.as_dict() for layer in outcome.layers],
                          findings=outcome.findings, verdict=outcome.verdict)
    return report, None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
