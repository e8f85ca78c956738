"""Verified remedies: every recommendation's edit applied to a copy of the network, the copy audited with the same
options (so the same probe batches, seeds and loss) and judged by the finding's own metric; then the best fix of
every finding applied together.

Statuses: `resolved` (the finding is gone and no new warning or critical finding appeared), `improved` (its
metric moved at least halfway to the threshold), `worse` (it moved away by more than a tenth of its distance),
`no_effect`, and `not_applicable` with the reason where the edit cannot be made or the copy cannot be audited.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from gradaudit.errors import AuditError, one_line
from gradaudit.options import AuditOptions
from worker.diagnosis.common import SEVERITY_RANK, Context
from worker.diagnosis.diagnose import context_of
from worker.engine import progress
from worker.engine.audit import EngineResult, Probed
from worker.engine.onnx.read import skeleton
from worker.engine.onnx.sizes import initializer_bytes
from worker.engine.onnx.wire import write_model
from worker.remedies.base import BaseNetwork
from worker.remedies.edits import EditInputs, apply_edit
from worker.remedies.graph import Graph, NotApplicable
from worker.remedies.metrics import measure, metric_for
from worker.remedies.training import TrainingComparison

STATUS_ORDER = ("resolved", "improved", "no_effect", "not_applicable", "worse")
# Where a network is too large to re-emit as one .onnx file (protobuf's limit is 2 GiB).
MAX_PATCHED_BYTES = 1_800_000_000
TRAINING_CODES = ("clip_gradients",)


# The audit's probe on a patched copy held in memory (it takes the proto: conversion rewrites it).
ProbeCopy = Callable[[onnx.ModelProto], Probed]


@dataclass
class Verification:
    status: str
    metric: str
    before: float | None
    after: float | None
    findings_after: list[str]
    seconds: float
    training: dict | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        entry = {"status": self.status, "metric": self.metric, "before": self.before, "after": self.after,
                 "findings_after": self.findings_after, "training": self.training, "seconds": round(self.seconds, 3)}
        return {**entry, "reason": self.reason} if self.reason else entry


@dataclass(frozen=True)
class PatchedCopy:
    """A patched copy that was written and probed: its file, the copy's probe, the patch in words, and the
    training comparison's curves (None without one)."""

    path: Path
    probed: Probed
    patch: str
    training: dict | None


@dataclass
class Remedies:
    """What verification adds to a report: recommendations rewritten in place, the combined patch, the patched
    files written (key -> path relative to the work folder), and the setup entries."""

    combined: dict | None = None
    files: dict[str, str] = field(default_factory=dict)
    setup: dict = field(default_factory=dict)
    # Each verified recommendation's copy (key "finding/code"). The same edit recommended for two findings, and
    # the combined patch of a single edit, are the same network: probed once, judged by each finding's metric.
    copies: dict[str, PatchedCopy] = field(default_factory=dict)


def verify_remedies(probed: Probed, base: BaseNetwork, probe: ProbeCopy, *, options: AuditOptions, out_dir: Path,
                    most: int, training: TrainingComparison | None) -> Remedies:
    """Verify the recommendations of the audit's findings (at most `most` of them, report order), rewrite each with
    its patch and verification, order them by measured effect, then verify the combined patch."""
    result, context = probed.result, context_of(probed.facts)
    remedies, verified, by_edit = Remedies(), 0, {}
    planned = min(most, sum(len(finding["recommendations"]) for finding in result.findings)) + 1  # + combined
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_info_unverified(result.findings)
    for finding in result.findings:
        for recommendation in finding["recommendations"]:
            if finding["severity"] == "info":
                continue
            if verified >= most:
                recommendation["verification"] = _skipped(finding, f"not verified: GRADAUDIT_MAX_VERIFIED_REMEDIES "
                                                                   f"({most}) recommendations were verified first")
                continue
            verified += 1
            key = f"{finding['code']}/{recommendation['code']}"
            copy = _verify_one(finding, recommendation, result, context, base, probe, options, training,
                               out_dir / f"{finding['code']}--{recommendation['code']}.onnx", by_edit)
            if copy is not None:
                remedies.copies[key], remedies.files[key] = copy, str(copy.path)
            progress.report("verifying", verified / planned)
        finding["recommendations"].sort(key=_effect)
    remedies.combined = _combined(result, context, base, probe, options, training, out_dir / "combined.onnx",
                                  remedies)
    remedies.setup = {"verified_recommendations": verified, "max_verified_recommendations": most,
                      "route": base.route, "training": training.setup() if training else None}
    return remedies


def verifiable(findings: list[dict]) -> bool:
    """Whether any warning or critical finding has a recommendation: info findings' fixes are not verified."""
    return any(finding["recommendations"] for finding in findings if finding["severity"] != "info")


def mark_info_unverified(findings: list[dict]) -> None:
    for finding in findings:
        if finding["severity"] == "info":
            for recommendation in finding["recommendations"]:
                recommendation["verification"] = _skipped(finding, "not verified: an info finding, which training "
                                                                   "does not need fixed")


def _verify_one(finding: dict, recommendation: dict, result: EngineResult, context: Context, base: BaseNetwork,
                probe: ProbeCopy, options: AuditOptions, training: TrainingComparison | None, out: Path,
                by_edit: dict[str, PatchedCopy]) -> PatchedCopy | None:
    """Verify one recommendation on a patched copy (written to out, unless by_edit holds the same edit's copy);
    the copy, or None where there is none."""
    started = time.monotonic()
    metric = metric_for(finding)
    before = measure(metric, finding["code"], context)
    if recommendation["code"] in TRAINING_CODES:
        verification = _verify_by_training(recommendation, finding, training, metric.name, before, started)
        _record(recommendation, None, verification)
        return None
    edit = _edit_identity(recommendation)
    try:
        copy = by_edit.get(edit) or _patched_copy(base, recommendation, probe, options, training, out)
    except (NotApplicable, AuditError) as refused:
        _record(recommendation, None, Verification("not_applicable", metric.name, before, None, [],
                                                   time.monotonic() - started, reason=_reason(refused)))
        return None
    by_edit[edit] = copy
    patched = copy.probed
    after = measure(metric, finding["code"], context_of(patched.facts))
    status = _status(finding, result.findings, patched.result.findings, metric, before, after)
    _record(recommendation, copy.patch, Verification(status, metric.name, before, after,
                                                     _codes(patched.result.findings), time.monotonic() - started,
                                                     training=copy.training))
    return copy


def _patched_copy(base: BaseNetwork, recommendation: dict, probe: ProbeCopy, options: AuditOptions,
                  training: TrainingComparison | None, out: Path) -> PatchedCopy:
    """A copy of the base graph with the recommendation's edit, written and probed."""
    graph = _copy(base.proto)
    patch = apply_edit(graph, base.in_graph_names(recommendation), EditInputs(seed=options.seed,
                                                                               calibrate=base.calibrate))
    return _written_and_probed(graph, base.in_report_words(patch), probe, training, out)


def _written_and_probed(graph: Graph, patch: str, probe: ProbeCopy, training: TrainingComparison | None,
                        out: Path) -> PatchedCopy:
    """The patched graph written to out and probed (NotApplicable or AuditError where it cannot be: out is
    removed)."""
    try:
        _save(graph.proto, out)
        patched = probe(graph.proto)
    except (NotApplicable, AuditError):
        out.unlink(missing_ok=True)
        raise
    return PatchedCopy(out, patched, patch, training.compare(out) if training else None)


def _edit_identity(recommendation: dict) -> str:
    """What decides the patched network: the code, the layers and the edit's parameters (not the text)."""
    return json.dumps([recommendation["code"], recommendation.get("layers", []), recommendation.get("edit", {})],
                      sort_keys=True, default=str)


def _copy(proto: onnx.ModelProto) -> Graph:
    copied = onnx.ModelProto()
    copied.CopyFrom(proto)
    return Graph(copied)


def _save(proto: onnx.ModelProto, path: Path) -> None:
    """Check the patched graph and write it as one .onnx file."""
    if initializer_bytes(proto.graph) > MAX_PATCHED_BYTES:
        raise NotApplicable("the patched network is too large to write as one .onnx file")
    try:  # the graph without its weights: the checker reads the graph, and handed the weights it copies them twice
        onnx.checker.check_model(skeleton(proto))
    except Exception as exc:  # an edit that breaks the graph is our bug, but the user gets a reason, not a crash
        raise NotApplicable(f"the patched graph does not pass onnx.checker: {one_line(exc, 200)}") from None
    write_model(proto, path)


def _status(finding: dict, before_findings: list[dict], after_findings: list[dict], metric, before: float | None,
            after: float | None) -> str:
    serious_before = {f["code"] for f in before_findings if SEVERITY_RANK[f["severity"]] >= 1}
    serious_after = {f["code"] for f in after_findings if SEVERITY_RANK[f["severity"]] >= 1}
    if finding["code"] not in serious_after and serious_after <= serious_before:
        return "resolved"
    if before is None or after is None:
        return "no_effect"
    if metric.moved_halfway(before, after):
        return "improved"
    return "worse" if metric.worse(before, after) else "no_effect"


def _verify_by_training(recommendation: dict, finding: dict, training: TrainingComparison | None, metric: str,
                        before: float | None, started: float) -> Verification:
    """Clipping changes no gradient the probe measures: it is judged by training both ways from the same
    weights (the loss and the largest update-to-weight ratio, with and without clip_grad_norm_)."""
    max_norm = recommendation.get("edit", {}).get("max_norm")
    reason = ("clipping is verified by training with and without it, and the training comparison is off "
              "(verify_steps is 0, or the network has more parameters than its budget)" if training is None else
              "the recommendation states no max_norm" if max_norm is None else None)
    if reason:
        return Verification("not_applicable", "max_update_to_weight", None, None, [], time.monotonic() - started,
                            reason=reason)
    compared = training.compare_clipping(max_norm)
    return Verification(compared["status"], "max_update_to_weight", compared["before"], compared["after"], [],
                        time.monotonic() - started, training=compared["training"])


def _record(recommendation: dict, patch: str | None, verification: Verification) -> None:
    recommendation["patch"] = patch
    recommendation["verification"] = verification.as_dict()
    if verification.before is not None and verification.after is not None:
        recommendation["text"] += (f" Measured on a patched copy: {verification.metric} {_show(verification.before)}"
                                   f" -> {_show(verification.after)} ({verification.status.replace('_', ' ')}).")
    elif verification.status == "not_applicable":
        recommendation["text"] += f" Not verified: {verification.reason}"


def _skipped(finding: dict, reason: str) -> dict:
    return Verification("not_applicable", metric_for(finding).name, None, None, [], 0.0, reason=reason).as_dict()


def _effect(recommendation: dict) -> tuple[int, int, float]:
    """Sort key: status first, then the fewest warning/critical findings left on the copy, then the metric's gain
    (larger first)."""
    verification = recommendation.get("verification") or {}
    rank = STATUS_ORDER.index(verification.get("status", "not_applicable"))
    before, after = verification.get("before"), verification.get("after")
    gain = abs(after - before) if before is not None and after is not None else 0.0
    return rank, len(verification.get("findings_after") or []), -gain


def _combined(result: EngineResult, context: Context, base: BaseNetwork, probe: ProbeCopy, options: AuditOptions,
              training: TrainingComparison | None, out: Path, remedies: Remedies) -> dict | None:
    """The best-verified graph edit of every finding, applied together in finding order, verified alike."""
    chosen, skipped = [], []
    for finding in result.findings:
        best = next((r for r in finding["recommendations"] if r.get("verification", {}).get("status") in
                     ("resolved", "improved") and r["code"] not in TRAINING_CODES), None)
        if best is not None and best["code"] not in {r["code"] for _, r in chosen}:
            chosen.append((finding, best))
    if not chosen:
        return None
    started = time.monotonic()
    single = f"{chosen[0][0]['code']}/{chosen[0][1]['code']}" if len(chosen) == 1 else None
    if single in remedies.copies:  # one edit: the combined patch is that recommendation's copy, already probed
        applied, copy = chosen, remedies.copies[single]
    else:
        graph, applied, patch = _applied_together(base, chosen, options, skipped)
        try:
            copy = _written_and_probed(graph, patch, probe, training, out)
        except (NotApplicable, AuditError) as refused:
            return {**_listed(applied, skipped), "patch": None,
                    "verification": {"status": "not_applicable", "reason": _reason(refused),
                                     "seconds": round(time.monotonic() - started, 3)}}
    remedies.files["combined"] = str(copy.path)
    patched = copy.probed.result
    serious = [f["code"] for f in patched.findings if SEVERITY_RANK[f["severity"]] >= 1]
    before = [f["code"] for f in result.findings if SEVERITY_RANK[f["severity"]] >= 1]
    status = ("resolved" if not serious else "improved" if len(serious) < len(before) else
              "worse" if SEVERITY_RANK.get(patched.verdict, 0) > SEVERITY_RANK.get(result.verdict, 0) else "no_effect")
    return {**_listed(applied, skipped), "patch": copy.patch, "verification": {
        "status": status, "verdict_before": result.verdict, "verdict_after": patched.verdict,
        "findings_before": _codes(result.findings), "findings_after": _codes(patched.findings),
        "training": copy.training, "seconds": round(time.monotonic() - started, 3)}}


def _listed(applied: list[tuple[dict, dict]], skipped: list[dict]) -> dict[str, Any]:
    return {"recommendations": [{"finding": f["code"], "code": r["code"]} for f, r in applied], "skipped": skipped}


def _applied_together(base: BaseNetwork, chosen: list[tuple[dict, dict]], options: AuditOptions,
                      skipped: list[dict]) -> tuple[Graph, list[tuple[dict, dict]], str]:
    """The chosen edits made one after another on one copy, each on a trial copy of the last good graph: each
    edit alone was made, but together a later one may find its layer changed by an earlier one (skipped, with
    the reason)."""
    graph, applied, patches = None, [], []
    inputs = EditInputs(seed=options.seed, calibrate=base.calibrate)
    for finding, recommendation in chosen:
        trial = _copy((graph or base).proto)  # the base itself is never edited
        try:
            patches.append(apply_edit(trial, base.in_graph_names(recommendation), inputs))
        except NotApplicable as refused:
            skipped.append({"finding": finding["code"], "code": recommendation["code"], "reason": str(refused)})
            continue
        graph = trial
        applied.append((finding, recommendation))
    return graph or _copy(base.proto), applied, base.in_report_words("; ".join(patches))


def _codes(findings: list[dict]) -> list[str]:
    return [f"{f['code']}:{f['severity']}" for f in findings if f["severity"] != "info"]


def _reason(refused: Exception) -> str:
    if isinstance(refused, AuditError):
        return f"the patched network could not be audited ({refused.code}: {refused.detail})"
    return str(refused)


def _show(value: float) -> str:
    return f"{value:.3g}"


