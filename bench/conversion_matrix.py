"""The full conversion matrix: families x opsets 13-21 x legacy/dynamo exporters x fixed/dynamic batch.

Each case is exported, loaded through the engine's ONNX loader, compared with onnxruntime (pass: max abs
diff <= 1e-4) and backpropagated (pass: every parameter gets a gradient). Dynamo below opset 18 is tried
(the exporter converts down when it can); a case the exporter cannot write is 'n/a', not a pass.

    .venv/bin/python bench/conversion_matrix.py [--family lstm] [--opset 18]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.errors import one_line  # noqa: E402
from suites.conversion import PARITY, cases, check, export  # noqa: E402


def run_case(case, folder: Path) -> tuple[str, str]:
    """('pass' | 'FAIL' | 'n/a', detail) for one case."""
    path = export(case, folder, try_down_conversion=True)
    if isinstance(path, str):
        return "n/a", path
    try:
        result = check(case, path)
    except Exception as exc:
        return "FAIL", one_line(exc, 160)
    ok = result["max_abs_diff"] <= PARITY and not result["without_grad"] and not result["unhookable"]
    detail = f"diff {result['max_abs_diff']:.1e}, {result['nodes']} nodes, {result['layers']} layers"
    if result["unhookable"]:
        detail += f", not modules: {result['unhookable'][:3]}"
    if result["without_grad"]:
        detail += f", no grad: {result['without_grad'][:3]}"
    return ("pass" if ok else "FAIL"), detail


def main() -> None:
    """Run the selected cases and print one line each, then the totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family")
    parser.add_argument("--opset", type=int)
    args = parser.parse_args()
    selected = [c for c in cases() if (args.family in (None, c.family)) and (args.opset in (None, c.opset))]
    outcomes, start = Counter(), time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for case in selected:
            outcome, detail = run_case(case, Path(folder))
            outcomes[outcome] += 1
            print(f"{case.family:12} {case.exporter:7} opset {case.opset:2} {case.batch:8} {outcome:5} {detail}",
                  flush=True)
    applicable = outcomes["pass"] + outcomes["FAIL"]
    print(f"\nconversion matrix: {outcomes['pass']}/{applicable} applicable cases pass "
          f"({outcomes['n/a']} not applicable) in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
