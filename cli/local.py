"""Run an audit in this process, for `gradaudit audit`: no server, and the same path the worker takes
(worker.runner.run_artifact), so the same error codes and the same report."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gradaudit.errors import AuditError
from gradaudit.formats import UnsupportedFormat, sniff_format
from gradaudit.options import AuditOptions
from gradaudit.report import build_report
from gradaudit.settings import Settings


def audit_file(
    path: Path, *, options: AuditOptions, inputs_path: Path | None, settings: Settings,
    write_fixes: Path | None = None, on_progress: Callable[[str, float], None] | None = None,
) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """Audit a file; return (report, None) or (None, (code, detail)). write_fixes: a folder to copy each verified
    recommendation's patched network into (FINDING--CODE.onnx, combined.onnx). on_progress(phase, progress): told
    where the audit is as it runs."""
    from worker.remedies.audit import audit_with_remedies  # torch loads here, for this command only
    from worker.runner import run_artifact

    # The sandboxed child works in its own scratch folder: a path relative to ours would name nothing there.
    path, inputs_path = path.resolve(), inputs_path.resolve() if inputs_path else None
    try:
        with path.open("rb") as stream:
            artifact_format = sniff_format(stream)
    except UnsupportedFormat as refused:
        return None, ("unsupported_format", refused.detail)
    with tempfile.TemporaryDirectory(prefix="gradaudit-") as scratch:
        outcome = run_artifact(path, artifact_format, options=options, inputs_path=inputs_path, settings=settings,
                               work_dir=Path(scratch) / "network",
                               run_engine=partial(audit_with_remedies, max_verified=settings.max_verified_remedies),
                               data_dir=path.resolve().parent,  # torch's exporters write NAME.onnx.data beside it
                               drop_user=False,  # one's own file, as oneself: the sandbox's other walls stay
                               keep_fixes=partial(_copy_fixes, write_fixes) if write_fixes else None,
                               on_progress=on_progress)
    if isinstance(outcome, AuditError):
        return None, (outcome.code, outcome.detail)
    network = {**outcome.network, "sha256": _sha256(path)}
    report = build_report(audit_id=None, network=network, setup=outcome.setup,
                          layers=[layer.as_dict() for layer in outcome.layers],
                          findings=outcome.findings, verdict=outcome.verdict, combined=outcome.combined)
    return report, None


def _copy_fixes(folder: Path, result, files: dict[str, Path]) -> None:
    """Copy the patched networks into folder, naming each in the report as `network.file`."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, source in files.items():
        target = folder / (key.replace("/", "--") + ".onnx")
        shutil.copyfile(source, target)
        entry = {"file": str(target), "format": "onnx", "size": target.stat().st_size}
        if key == "combined" and result.combined is not None:
            result.combined["network"] = entry
        for finding in result.findings:
            for recommendation in finding["recommendations"]:
                if key == f"{finding['code']}/{recommendation['code']}":
                    recommendation["network"] = entry


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
