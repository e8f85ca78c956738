"""Verified remedies scored on the labelled suite: bench/score_diagnosis.py --remedies runs audit_with_remedies
(worker/remedies/audit.py) on every case and prints, against issue 13's targets, how often the first
recommendation of every finding is resolved or improved, the recommendations emitted on healthy controls, how
often the combined patch leaves a faulty case healthy, and a per-recommendation-code table of statuses.

"First" is read two ways: as diagnosed (the report's order before verification, captured from the audit that
audit_with_remedies verifies) and as reported (after verification re-orders each finding's recommendations by
measured effect, so the first is the best verified one).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

import worker.remedies.audit as remedies_audit
from worker.remedies.verify import STATUS_ORDER

FIRST_TARGET, COMBINED_TARGET = 0.95, 0.90
GOOD = ("resolved", "improved")


def audit_verified(path: Path, options, folder: Path, external_data_dir: Path):
    """audit_with_remedies run inside folder (its patched files go there), and each finding's recommendation codes
    in the order the diagnosis gave them."""
    diagnosed: list[list[str]] = []
    plain = remedies_audit.probe_network

    def first_call_recorded(*args, **kwargs):
        probed = plain(*args, **kwargs)
        if not diagnosed:  # the first call is the audit being verified; later ones probe patched copies
            diagnosed.append([[r["code"] for r in f["recommendations"]] for f in probed.result.findings])
        return probed

    folder.mkdir(parents=True, exist_ok=True)
    remedies_audit.probe_network = first_call_recorded
    try:
        with _inside(folder):
            result = remedies_audit.audit_with_remedies(path, options=options, device="cpu",
                                                        external_data_dir=external_data_dir,
                                                        fixes_dir=folder / "fixes")
    finally:
        remedies_audit.probe_network = plain
    return result, (diagnosed[0] if diagnosed else [])


@contextlib.contextmanager
def _inside(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def remedy_row(result, diagnosed: list[list[str]]) -> dict:
    """What one verified audit says about its recommendations, flat enough for JSON."""
    findings = []
    for finding, order in zip(result.findings, diagnosed):
        if not finding["recommendations"]:
            continue
        by_code = {r["code"]: r for r in finding["recommendations"]}
        findings.append({"code": finding["code"], "severity": finding["severity"],
                         "diagnosed_first": _brief(by_code[order[0]]),
                         "reported_first": _brief(finding["recommendations"][0])})
    combined = result.combined or {}
    verification = combined.get("verification") or {}
    return {"remedy_findings": findings,
            "recommendations": [_brief(r) for f in result.findings for r in f["recommendations"]],
            "combined": {"status": verification.get("status"), "verdict_before": result.verdict,
                         "verdict_after": verification.get("verdict_after"), "chosen": combined.get("recommendations"),
                         "skipped": combined.get("skipped"), "findings_after": verification.get("findings_after"),
                         "reason": verification.get("reason")} if combined else None,
            "remedies_setup": result.setup.get("remedies")}


def _brief(recommendation: dict) -> dict:
    verification = recommendation.get("verification") or {}
    return {"code": recommendation["code"], **{k: verification.get(k) for k in
                                               ("status", "metric", "before", "after", "findings_after", "seconds",
                                                "reason")}}


def print_remedies(rows: list[dict]) -> None:
    """The figures issue 13 asks for, each beside its target, and the cases that fall short."""
    audited = [r for r in rows if not r["error"]]
    print("\nverified remedies (audit_with_remedies)")
    for which in ("diagnosed_first", "reported_first"):
        _print_first(audited, which)
    healthy = [r for r in audited if not r["expected"]]
    emitted = [r for r in healthy if r["recommendations"]]
    print(f"healthy controls (no expected finding; {sum(r['family'] == 'healthy' for r in healthy)} of them the "
          f"'healthy' family): {sum(len(r['recommendations']) for r in healthy)} recommendations emitted, "
          f"on {len(emitted)}/{len(healthy)} controls (target 0)")
    for row in emitted:
        print(f"  {_name(row)}: {', '.join(b['code'] + ':' + str(b['status']) for b in row['recommendations'])}")
    _print_combined(audited)
    _print_status_table(audited)


def _print_first(rows: list[dict], which: str) -> None:
    with_findings = [r for r in rows if r["expected"] and r["remedy_findings"]]
    short = [r for r in with_findings if any(f[which]["status"] not in GOOD for f in r["remedy_findings"])]
    good = len(with_findings) - len(short)
    label = "as diagnosed" if which == "diagnosed_first" else "as reported, re-ordered by effect"
    print(f"first recommendation ({label}) of every finding resolved/improved: {good}/{len(with_findings)} "
          f"faulty cases with findings ({_share(good, len(with_findings))}, target >= {FIRST_TARGET:.2f})")
    for row in short:
        for finding in row["remedy_findings"]:
            first = finding[which]
            if first["status"] not in GOOD:
                print(f"  {_name(row)}: {finding['code']} -> {first['code']} {first['status']} "
                      f"({first['metric']} {_show(first['before'])} -> {_show(first['after'])}"
                      f"{'; after: ' + ','.join(first['findings_after']) if first['findings_after'] else ''})"
                      f"{' ' + first['reason'] if first['reason'] else ''}")


def _print_combined(rows: list[dict]) -> None:
    faulty = [r for r in rows if r["expected"] and r["remedy_findings"]]
    healed = [r for r in faulty if (r["combined"] or {}).get("verdict_after") == "healthy"]
    print(f"combined patch leaves the case healthy: {len(healed)}/{len(faulty)} faulty cases with findings "
          f"({_share(len(healed), len(faulty))}, target >= {COMBINED_TARGET:.2f})")
    silent = [r for r in rows if r["expected"] and not r["remedy_findings"]]
    if silent:
        print(f"  ({len(silent)} faulty cases (expected findings) had no recommendation to verify: "
              f"{', '.join(_name(r) for r in silent)})")
    for row in faulty:
        if row not in healed:
            combined = row["combined"]
            print(f"  {_name(row)}: " + ("no combined patch (no finding had a resolved/improved graph edit)"
                                         if combined is None else
                                         f"{combined['status']}, verdict {combined['verdict_before']} -> "
                                         f"{combined['verdict_after']}, applied "
                                         f"{'+'.join(c['code'] for c in combined['chosen'] or [])}, after: "
                                         f"{','.join(combined['findings_after'] or []) or '-'}"
                                         f"{', skipped ' + str(combined['skipped']) if combined['skipped'] else ''}"
                                         f"{', ' + combined['reason'] if combined['reason'] else ''}"))


def _print_status_table(rows: list[dict]) -> None:
    everything, first = Counter(), Counter()
    for row in rows:
        for brief in row["recommendations"]:
            everything[brief["code"], brief["status"]] += 1
        for finding in row["remedy_findings"]:
            first[finding["diagnosed_first"]["code"]] += 1
    codes = sorted({code for code, _ in everything})
    print(f"\nrecommendation statuses, every verified recommendation ('first': times it was a finding's diagnosed "
          f"first)\n{'code':24s} " + " ".join(f"{s[:8]:>8s}" for s in STATUS_ORDER) + f" {'first':>6s}")
    for code in codes:
        print(f"{code:24s} " + " ".join(f"{everything[code, s]:8d}" for s in STATUS_ORDER) + f" {first[code]:6d}")
    seconds = sorted(b["seconds"] for r in rows for b in r["recommendations"] if b["seconds"])
    if seconds:
        print(f"seconds per verified recommendation: median {seconds[len(seconds) // 2]:.2f}, max {seconds[-1]:.2f}")


def _name(row: dict) -> str:
    return f"{row['case']} [{row['format']}]"


def _share(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "-"


def _show(value) -> str:
    return "-" if value is None else f"{value:.3g}"
