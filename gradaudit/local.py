"""Run the engine in this process, for `gradaudit audit`: no server, the same report."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from gradaudit.archives import ArchiveRefused, opened_network
from gradaudit.formats import UnsupportedFormat, sniff_format
from gradaudit.options import AuditOptions
from gradaudit.report import build_report
from gradaudit.settings import Settings


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def audit_file(
    path: Path, *, options: AuditOptions, inputs_path: Path | None, settings: Settings
) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """Audit a file; return (report, None) or (None, (code, detail))."""
    from worker.engine import audit_network
    from worker.engine.errors import AuditError

    try:
        with path.open("rb") as stream:
            artifact_format = sniff_format(stream)
        with tempfile.TemporaryDirectory(prefix="gradaudit-") as scratch:
            with opened_network(path, artifact_format, Path(scratch) / "network",
                                max_total_bytes=settings.max_extracted_bytes) as (network_path, fmt, data_dir):
                result = audit_network(network_path, options=options, device=settings.device,
                                       inputs_path=inputs_path, network_format=fmt, external_data_dir=data_dir)
    except UnsupportedFormat as refused:
        return None, ("unsupported_format", refused.detail)
    except (AuditError, ArchiveRefused) as refused:
        return None, (refused.code, refused.detail)
    network = {**result.network, "sha256": _sha256(path)}
    report = build_report(audit_id=None, network=network, setup=result.setup,
                          layers=[layer.as_dict() for layer in result.layers],
                          findings=result.findings, verdict=result.verdict)
    return report, None
