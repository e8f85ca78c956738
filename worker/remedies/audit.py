"""An audit whose recommendations are verified: the engine's audit, then each fix applied to a copy and re-probed
with the same options (worker/remedies/verify.py). The worker and `gradaudit audit` run this in the sandbox."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import onnx

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from worker.engine import progress
from worker.engine.audit import EngineResult, Probed, probe_network, probe_opened
from worker.engine.device import resolve_device
from worker.engine.formats import OpenedNetwork
from worker.engine.onnx import load_proto
from worker.remedies.base import BaseNetwork, exported_base, onnx_base
from worker.remedies.graph import NotApplicable
from worker.remedies.training import TrainingComparison, default_steps
from worker.remedies.verify import mark_info_unverified, verifiable, verify_remedies

log = logging.getLogger(__name__)
FIXES_DIR = Path("fixes")  # in the audit's work folder (the sandbox's scratch), collected by the parent


def audit_with_remedies(path: Path, *, options: AuditOptions, device: str = "auto", inputs_path: Path | None = None,
                        network_format: str | None = None, external_data_dir: Path | None = None,
                        max_verified: int = 12, fixes_dir: Path = FIXES_DIR) -> EngineResult:
    """audit_network, then every recommendation verified (options.verify_remedies) and written to fixes_dir.
    Verification never costs the audit its report: where it fails unexpectedly, each recommendation says so."""
    device = resolve_device(device)
    probed = probe_network(path, options=options, device=device, inputs_path=inputs_path,
                           network_format=network_format, external_data_dir=external_data_dir)
    result = probed.result
    if not options.verify_remedies or max_verified == 0:
        return _with_setup(result, {"verified": False, "reason": "verify_remedies is off" if not
                                    options.verify_remedies else "GRADAUDIT_MAX_VERIFIED_REMEDIES is 0"})
    if not any(finding["recommendations"] for finding in result.findings):
        return _with_setup(result, {"verified": False, "reason": "no recommendation to verify"})
    if not verifiable(result.findings):
        mark_info_unverified(result.findings)
        return _with_setup(result, {"verified": False, "reason": "only info findings have recommendations, and "
                                                                 "those are not verified"})
    progress.report("verifying")
    try:
        base = _base(path, probed, network_format, external_data_dir, device)
    except (NotApplicable, AuditError) as refused:
        reason = refused.detail if isinstance(refused, AuditError) else str(refused)
        _not_applicable_everywhere(result, f"the network could not be re-expressed as ONNX to edit: {reason}")
        return _with_setup(result, {"verified": False, "reason": reason})
    except Exception:
        log.exception("re-expressing %s as ONNX failed", path)
        reason = "re-expressing the network as ONNX hit an unexpected error; it has been logged"
        _not_applicable_everywhere(result, f"the network could not be re-expressed as ONNX to edit: {reason}")
        return _with_setup(result, {"verified": False, "reason": reason})

    def probe_copy(patched: onnx.ModelProto) -> Probed:
        """The audit's probe on a patched copy held in memory: the audit's batches, no file read back, no parity
        (the upload's conversion was checked by its audit; the edits' own fidelity by tests, which run each
        patched file against onnxruntime: tests/remedies/test_verify.py)."""
        with progress.muted():  # the copy's phases are not the audit's: it is verifying
            copy = OpenedNetwork(load_proto(patched), probed.batches)
            return probe_opened(copy, options=options, device=device)

    try:
        training = _training(base, probed, options, device, fixes_dir)
        remedies = verify_remedies(probed, base, probe_copy, options=options, out_dir=fixes_dir, most=max_verified,
                                   training=training)
    except Exception:
        log.exception("verifying the remedies of %s failed", path)
        reason = "verification hit an unexpected error; it has been logged"
        _not_applicable_everywhere(result, reason)
        return _with_setup(result, {"verified": False, "reason": reason})
    setup = {"verified": True, **remedies.setup}
    return replace(result, combined=remedies.combined, fixes=remedies.files,
                   setup={**result.setup, "remedies": setup})


PT2_REASON = ("fixes are made as ONNX graph edits, and the module a .pt2 program loads as cannot be exported to ONNX "
              "here (torch.onnx.export refuses to switch its mode or to take its parameters as constants): upload "
              "the network's ONNX export (torch.onnx.export(network, inputs, 'net.onnx')) for verified fixes")


def _base(path: Path, probed: Probed, network_format: str | None, external_data_dir: Path | None,
          device: str) -> BaseNetwork:
    network_format = probed.result.network["format"]
    if network_format == "onnx":
        return onnx_base(path, external_data_dir, probed.batches)
    if network_format == "pt2":
        raise NotApplicable(PT2_REASON)
    return exported_base(path, probed, network_format, device)


def _training(base: BaseNetwork, probed: Probed, options: AuditOptions, device: str,
              fixes_dir: Path) -> TrainingComparison | None:
    steps = options.verify_steps if options.verify_steps is not None else default_steps(
        probed.result.network["parameters"])
    if steps == 0:
        return None
    fixes_dir.mkdir(parents=True, exist_ok=True)
    original = fixes_dir / "original.onnx"
    onnx.save(base.proto, original)
    return TrainingComparison(original, probed.batches, options, steps, device)


def _with_setup(result: EngineResult, remedies: dict) -> EngineResult:
    return replace(result, setup={**result.setup, "remedies": remedies})


def _not_applicable_everywhere(result: EngineResult, reason: str) -> None:
    for finding in result.findings:
        for recommendation in finding["recommendations"]:
            recommendation["patch"] = None
            recommendation["verification"] = {"status": "not_applicable", "metric": None, "before": None,
                                              "after": None, "findings_after": [], "training": None, "seconds": 0.0,
                                              "reason": reason}
