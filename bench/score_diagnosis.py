"""Score the diagnosis against the labelled development suite (suites/diagnosis.py), beside two baselines.

Every case is exported to ONNX and TorchScript and audited; a code counts as raised when a finding with that
code is a warning or critical. Per finding code: TP, FP, FN, precision, recall; then the false-alarm rate on
the healthy controls and how often the first recommendation is one of the literature's fixes. The baselines
(suites/baselines.py) run their published rules on the same networks in memory, once per case and format.

    .venv/bin/python bench/score_diagnosis.py                 # the full sweep, both formats
    .venv/bin/python bench/score_diagnosis.py --sweep fast --formats torchscript
    .venv/bin/python bench/score_diagnosis.py --remedies --every 3     # verified remedies on a third of the sweep

--remedies runs audit_with_remedies instead of the plain audit and adds issue 13's figures (bench/remedy_scores.py);
--every N keeps every Nth case of each family, --families a,b only those families (bounded runs on a small machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.remedy_scores import audit_verified, print_remedies, remedy_row  # noqa: E402
from gradaudit.errors import AuditError  # noqa: E402
from suites.baselines import autotrainer, sagemaker  # noqa: E402
from suites.diagnosis import EXPORT_ROUTES, cases, export  # noqa: E402
from worker.diagnosis.diagnose import FINDING_CODES  # noqa: E402
from worker.engine.audit import audit_network  # noqa: E402

SCORED = ("gradaudit", "autotrainer", "sagemaker")
BASELINE_CODES = {"autotrainer": {"vanishing_gradient", "exploding_gradient", "dead_relu"},
                  "sagemaker": {"vanishing_gradient", "dead_relu", "saturated_activation"}}


def main() -> None:
    """Run the sweep and print the tables."""
    args = _arguments()
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in _subset(cases(args.sweep), args.every, args.families):
            baseline = {"autotrainer": autotrainer(case.network(), case.shape),
                        "sagemaker": sagemaker(case.network(), case.shape)}
            for network_format in args.formats:
                rows.append(_score_one(case, network_format, Path(folder), baseline, args.remedies))
                if args.verbose and not rows[-1]["right"]:
                    print("miss", json.dumps({k: rows[-1][k] for k in ("case", "format", "expected", "raised",
                                                                       "first")}, default=sorted), file=sys.stderr)
    _print(rows)
    if args.remedies:
        print_remedies(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=sorted))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", choices=("full", "fast"), default="full")
    parser.add_argument("--formats", nargs="+", choices=EXPORT_ROUTES, default=["onnx", "torchscript"])
    parser.add_argument("--json", help="also write every case's result to this file")
    parser.add_argument("--verbose", action="store_true", help="name each case gradaudit gets wrong")
    parser.add_argument("--remedies", action="store_true", help="verify every recommendation (audit_with_remedies)")
    parser.add_argument("--every", type=int, default=1, help="keep every Nth case of each family")
    parser.add_argument("--families", help="comma-separated families to keep (e.g. glorot2010,healthy)")
    return parser.parse_args()


def _subset(found: list, every: int, families: str | None) -> list:
    kept = set(families.split(",")) if families else None
    position: Counter = Counter()
    chosen = []
    for case in found:
        position[case.family] += 1
        if (kept is None or case.family in kept) and (position[case.family] - 1) % every == 0:
            chosen.append(case)
    return chosen


def _score_one(case, network_format: str, folder: Path, baseline: dict, remedies: bool = False) -> dict:
    path, options = export(case, network_format, folder)
    started, extra = time.perf_counter(), {}
    try:
        if remedies:
            work = folder / f"{case.name}-{network_format}-remedies"
            result, diagnosed = audit_verified(path, options, work, path.parent)
            extra = remedy_row(result, diagnosed)
            first = diagnosed[0][0] if diagnosed and diagnosed[0] else None  # the diagnosis's first, as unverified
        else:
            result = audit_network(path, options=options, device="cpu", external_data_dir=path.parent)
            first = result.findings[0]["recommendations"][0]["code"] if result.findings else None
        raised = {f["code"] for f in result.findings if f["severity"] in ("warning", "critical")}
        error = None
    except AuditError as failed:
        raised, first, error = set(), None, failed.code
    seconds = time.perf_counter() - started
    return {**extra, "case": case.name, "family": case.family, "format": network_format, "expected": set(case.expected),
            "fixes": set(case.fixes), "raised": raised, "first": first, "error": error, "seconds": seconds,
            "autotrainer": baseline["autotrainer"], "sagemaker": baseline["sagemaker"],
            "right": raised == set(case.expected) and (not case.fixes or first in case.fixes)}


def _counts(rows: list[dict], tool: str) -> dict[str, Counter]:
    counts = {code: Counter() for code in FINDING_CODES}
    for row in rows:
        for code in FINDING_CODES:
            expected, raised = code in row["expected"], code in row[tool if tool != "gradaudit" else "raised"]
            counts[code]["TP" if expected and raised else "FP" if raised else "FN" if expected else "TN"] += 1
    return counts


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "  - "


def _print(rows: list[dict]) -> None:
    errors = [r for r in rows if r["error"]]
    seconds = [r["seconds"] for r in rows]
    print(f"{len(rows)} audits ({len({r['case'] for r in rows})} cases x formats), {len(errors)} failed to audit; "
          f"audit time median {statistics.median(seconds):.2f}s, max {max(seconds):.2f}s")
    for error in errors:
        print(f"  failed: {error['case']} [{error['format']}]: {error['error']}")
    _print_codes(rows, "gradaudit")
    healthy = [r for r in rows if r["family"] == "healthy"]
    flagged = [r for r in healthy if r["raised"]]
    with_fix = [r for r in rows if r["fixes"]]
    print(f"\nhealthy controls with a warning/critical finding: {len(flagged)}/{len(healthy)} "
          f"(false-alarm rate {_ratio(len(flagged), len(healthy))})")
    print(f"first recommendation is the literature's fix: {sum(r['first'] in r['fixes'] for r in with_fix)}"
          f"/{len(with_fix)} ({_ratio(sum(r['first'] in r['fixes'] for r in with_fix), len(with_fix))})")
    print(f"cases exactly right (codes and first fix): {sum(r['right'] for r in rows)}/{len(rows)}")
    _print_comparison(rows)


def _print_codes(rows: list[dict], tool: str) -> None:
    print(f"\n{'code':24s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'precision':>9s} {'recall':>7s}")
    for code, c in _counts(rows, tool).items():
        print(f"{code:24s} {c['TP']:4d} {c['FP']:4d} {c['FN']:4d} {_ratio(c['TP'], c['TP'] + c['FP']):>9s} "
              f"{_ratio(c['TP'], c['TP'] + c['FN']):>7s}")


def _print_comparison(rows: list[dict]) -> None:
    counts = {tool: _counts(rows, tool) for tool in SCORED}
    print("\nprecision / recall per code (— : the rule set has no rule for it)")
    print(f"{'code':24s} " + " ".join(f"{tool:>13s}" for tool in SCORED))
    for code in FINDING_CODES:
        cells = []
        for tool in SCORED:
            c = counts[tool][code]
            covered = tool == "gradaudit" or code in BASELINE_CODES[tool]
            cells.append(f"{_ratio(c['TP'], c['TP'] + c['FP'])} / {_ratio(c['TP'], c['TP'] + c['FN'])}"
                         if covered else "—")
        print(f"{code:24s} " + " ".join(f"{cell:>13s}" for cell in cells))
    healthy = [r for r in rows if r["family"] == "healthy"]
    alarms = [sum(bool(r[tool if tool != "gradaudit" else "raised"]) for r in healthy) for tool in SCORED]
    print(f"{'healthy false alarms':24s} " + " ".join(f"{f'{a}/{len(healthy)}':>13s}" for a in alarms))


if __name__ == "__main__":
    main()
