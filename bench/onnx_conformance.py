"""Run the ONNX backend node tests through the engine's ONNX conversion and print the pass rate.

The onnx wheel ships the test generators, not their data, so the cases are generated here with onnx's own
code (onnx.backend.test.case.node.collect_testcases). A float test is one whose every expected output is a
floating-point tensor. It passes when, for every data set, conversion succeeds, each output matches the
reference with the test's own rtol/atol (onnx's backend runner: rtol=1e-3, atol=1e-7 unless the case says
otherwise; NaN equal to NaN), and, when the summed float outputs depend on something that requires grad
(float inputs are given requires_grad), backward runs.

    .venv/bin/python bench/onnx_conformance.py [--only SUBSTRING] [--verbose]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradaudit.errors import AuditError, one_line  # noqa: E402
from worker.engine.onnx.convert import convert_onnx  # noqa: E402

CASE_SECONDS = 30


class CaseTimeout(Exception):
    """A case ran past CASE_SECONDS."""


def float_cases(only: str | None) -> list:
    """The node test cases whose expected outputs are all floating-point tensors."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [c for c in cases if c.kind == "node" and (only is None or only in c.name) and _all_float(c)]


def _all_float(case) -> bool:
    outputs = [o for _, expected in case.data_sets or [] for o in expected]
    return bool(outputs) and all(isinstance(o, np.ndarray) and o.dtype.kind == "f" for o in outputs)


def run_case(case) -> str | None:
    """None when the case passes, else a one-line reason."""
    try:
        converted = convert_onnx(case.model)
    except AuditError as exc:
        return f"{exc.code}: {exc.detail}"[:160]
    for inputs, expected in case.data_sets:
        reason = _run_data_set(converted.module, inputs, expected, case.rtol, case.atol)
        if reason:
            return reason
    return None


def _run_data_set(module, inputs, expected, rtol: float, atol: float) -> str | None:
    tensors = [_tensor(value) for value in inputs]
    try:
        outputs = module(*tensors)
    except Exception as exc:
        return f"forward: {one_line(exc, 140)}"
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if len(outputs) < len(expected):
        return f"forward: {len(outputs)} outputs, expected {len(expected)}"
    for index, (ours, reference) in enumerate(zip(outputs, expected)):
        reason = _compare(ours, reference, rtol, atol)
        if reason:
            return f"output {index}: {reason}"
    return _backward(outputs[: len(expected)])


def _tensor(value):
    if isinstance(value, np.generic):  # a 0-d input the generator wrote as a numpy scalar
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        return value
    tensor = torch.from_numpy(np.array(value))
    return tensor.requires_grad_(True) if tensor.is_floating_point() else tensor


def _compare(ours, reference: np.ndarray, rtol: float, atol: float) -> str | None:
    if not isinstance(ours, torch.Tensor):
        return f"not a tensor ({type(ours).__name__})"
    values = ours.detach().cpu().numpy()
    if values.shape != reference.shape:
        return f"shape {list(values.shape)}, expected {list(reference.shape)}"
    try:
        np.testing.assert_allclose(values.astype(np.float64), reference.astype(np.float64), rtol=rtol, atol=atol)
    except AssertionError:
        diff = np.abs(values.astype(np.float64) - reference.astype(np.float64))
        return f"mismatch, max abs diff {np.nanmax(diff) if diff.size else float('nan'):.3g}"
    return None


def _backward(outputs: list) -> str | None:
    floats = [o for o in outputs if isinstance(o, torch.Tensor) and o.is_floating_point() and o.requires_grad]
    if not floats:
        return None
    try:
        sum(o.sum() for o in floats).backward()
    except Exception as exc:
        return f"backward: {one_line(exc, 140)}"
    return None


def _op_of(case) -> str:
    nodes = case.model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else f"{case.name.removeprefix('test_')} ({len(nodes)} nodes)"


def _on_alarm(signum, frame):
    raise CaseTimeout()


def run_all(cases: list, verbose: bool) -> dict[str, str | None]:
    """Each case's outcome by name, with a per-case time limit."""
    signal.signal(signal.SIGALRM, _on_alarm)
    outcomes = {}
    for case in cases:
        signal.alarm(CASE_SECONDS)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcomes[case.name] = run_case(case)
        except CaseTimeout:
            outcomes[case.name] = f"timeout after {CASE_SECONDS}s"
        except Exception as exc:
            outcomes[case.name] = f"harness: {one_line(exc, 140)}"
        finally:
            signal.alarm(0)
        if verbose and outcomes[case.name]:
            print(f"FAIL {case.name}: {outcomes[case.name]}", flush=True)
    return outcomes


def print_report(cases: list, outcomes: dict[str, str | None], seconds: float) -> None:
    """The headline pass rate, then failing ops with their tests and reasons."""
    failing = defaultdict(list)
    for case in cases:
        if outcomes[case.name]:
            failing[_op_of(case)].append((case.name, outcomes[case.name]))
    passed = len(cases) - sum(len(v) for v in failing.values())
    kinds = Counter(reason.split(":")[0] for v in failing.values() for _, reason in v)
    print(f"\n{'op':34} {'failed':>6}  first failing test: reason")
    for op, failures in sorted(failing.items(), key=lambda item: (-len(item[1]), item[0])):
        print(f"{op[:34]:34} {len(failures):>6}  {failures[0][0]}: {failures[0][1]}")
    print(f"\nfailure kinds: {dict(kinds.most_common())}")
    print(f"ONNX backend float node tests passed: {passed}/{len(cases)} = {100 * passed / len(cases):.1f}% "
          f"(forward rtol/atol per case, default 1e-3/1e-7; backward checked) in {seconds:.0f}s")


def main() -> None:
    """Parse arguments, run the float node tests, print the table and the pass rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only tests whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="print each failure as it happens")
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = float_cases(args.only)
    start = time.perf_counter()
    outcomes = run_all(cases, args.verbose)
    print_report(cases, outcomes, time.perf_counter() - start)


if __name__ == "__main__":
    main()
