"""Cost of verified remedies against the plain audit (issue 13): verifying all recommendations of a report should
cost at most 1 + 0.5 x N times the probe alone, N the recommendations verified.

    .venv/bin/python -W ignore bench/remedies.py [--only sigmoid_mlp,sigmoid_mlp_wide,transformer,resnet50,
                                                         resnet50_no_norm] [--repeats 1]

Each network is built in code at its default initialisation (no pretrained weights), exported to ONNX (legacy
exporter, opset 17) and audited on the CPU in this process both ways, side by side: the plain audit
(worker.engine.audit.audit_network) before and after audit_with_remedies (worker.remedies.audit), so the machine's
drift shows as the spread of the plain times (a first, untimed plain audit takes the first-use costs). The ratio
is (remedies - plain) / plain, plain the median of the plain runs, against 1 + 0.5 x N. Where the time goes: the
audit being verified, re-expressing the network as an editable base, converting and probing the patched copies
(one per distinct graph edit, one for a combined patch of several edits), BatchNorm calibration, the training
comparison, and the rest (edits, checker, writing the copies), taken by wrapping those functions here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import worker.remedies.audit as remedies_audit  # noqa: E402
import worker.remedies.training as remedies_training  # noqa: E402
from bench.overhead import TransformerClassifier  # noqa: E402
from gradaudit.options import AuditOptions  # noqa: E402
from suites import networks as n  # noqa: E402
from worker.engine.audit import audit_network  # noqa: E402
from worker.remedies.base import BaseNetwork  # noqa: E402


def networks() -> dict[str, tuple]:
    """name -> (builder, input shape with its batch dimension)."""
    import torchvision

    return {
        "sigmoid_mlp": (lambda: n.mlp(12, 32, "sigmoid"), (8, 32)),
        # The same fault at a size where the probe, not fixed per-copy costs, dominates.
        "sigmoid_mlp_wide": (lambda: n.mlp(12, 2048, "sigmoid"), (256, 2048)),
        "transformer": (TransformerClassifier, (8, 128, 256)),
        "resnet50": (lambda: torchvision.models.resnet50(weights=None).eval(), (8, 3, 128, 128)),
        # ResNet-50 with something to verify (without its BatchNorms: missing normalisation, exploding gradient),
        # where the audit's conversion and parity are a larger share of the audit than in the MLPs.
        "resnet50_no_norm": (lambda: torchvision.models.resnet50(weights=None, norm_layer=_no_norm).eval(),
                             (8, 3, 128, 128)),
    }


def _no_norm(channels: int) -> torch.nn.Module:
    return torch.nn.Identity()


def export(name: str, folder: Path) -> tuple[Path, AuditOptions]:
    """The network as ONNX, and the options to audit it with its input shape."""
    builder, shape = networks()[name]
    torch.manual_seed(0)
    network = builder().eval()
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.randn(shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return path, AuditOptions(input_shapes={"x": list(shape)})


class Stopwatch:
    """Seconds spent in the functions audit_with_remedies calls, by part, while installed."""

    def __init__(self):
        self.seconds, self.calls = defaultdict(float), defaultdict(int)
        self._saved: list[tuple] = []

    def __enter__(self):
        self._wrap(remedies_audit, "probe_network", lambda: "audit being verified")
        self._wrap(remedies_audit, "probe_opened", lambda: "re-audits of patched copies")
        self._wrap(remedies_audit, "load_proto", lambda: "converting patched copies")
        self._wrap(remedies_audit, "_base", lambda: "editable base (ONNX as is, or exported)")
        self._wrap(remedies_training, "_train", lambda: "training comparison")
        self._wrap(BaseNetwork, "calibrate", lambda: "BatchNorm calibration (in edits)")
        return self

    def __exit__(self, *exc):
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)

    def _wrap(self, module, name: str, part) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            label = part()
            with self._timing(label):
                return original(*args, **kwargs)

        self._saved.append((module, name, original))
        setattr(module, name, timed)

    @contextlib.contextmanager
    def _timing(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - started
            self.calls[part] += 1


def measure(name: str, folder: Path, repeats: int) -> dict:
    """Plain audit, audit with remedies, plain audit again (repeats times), and where the remedies' time went."""
    path, options = export(name, folder)
    audit_network(path, options=options, device="cpu")  # warm-up: first-use costs (imports, kernels) stay out
    plain, verified, training = [], [], []
    for repeat in range(repeats):
        plain.append(_timed(lambda: audit_network(path, options=options, device="cpu")))
        with Stopwatch() as watch:
            seconds, result = _timed(functools.partial(_with_remedies, path, options, folder / f"{name}-{repeat}"),
                                     keep=True)
        verified.append(seconds)
        training.append(watch.seconds.get("training comparison", 0.0))
    plain.append(_timed(lambda: audit_network(path, options=options, device="cpu")))
    recommendations = [r for f in result.findings for r in f["recommendations"]]
    return {"network": name, "parameters": result.network["parameters"], "verdict": result.verdict,
            "findings": [f"{f['code']}:{f['severity']}" for f in result.findings],
            "plain": plain, "verified": verified, "training": training, "recommendations": recommendations,
            "n": (result.setup.get("remedies") or {}).get("verified_recommendations", 0),
            "remedies_setup": result.setup.get("remedies"), "combined": result.combined,
            "parts": dict(watch.seconds), "calls": dict(watch.calls)}


def _with_remedies(path: Path, options: AuditOptions, work: Path):
    work.mkdir(parents=True)
    return remedies_audit.audit_with_remedies(path, options=options, device="cpu", fixes_dir=work / "fixes")


def _timed(call, keep: bool = False):
    started = time.perf_counter()
    value = call()
    seconds = time.perf_counter() - started
    return (seconds, value) if keep else seconds


def print_row(row: dict) -> None:
    plain, verified, n_ = statistics.median(row["plain"]), statistics.mean(row["verified"]), row["n"]
    ratio, target = (verified - plain) / plain, 1 + 0.5 * n_
    untrained = (verified - statistics.mean(row["training"]) - plain) / plain
    print(f"{row['network']:<12} {row['parameters']:>10,} {row['verdict']:<8} "
          f"{min(row['plain']):>7.2f}-{max(row['plain']):<7.2f} {verified:>9.2f} {n_:>3d} "
          f"{ratio:>7.2f}x {target:>7.1f}x {'ok' if ratio <= target else 'MISS':<4} {untrained:>8.2f}x "
          f"{verified / plain:>6.2f}x", flush=True)


def print_detail(row: dict) -> None:
    print(f"  {row['network']}: findings {', '.join(row['findings']) or 'none'}")
    if not row["recommendations"]:
        reason = (row["remedies_setup"] or {}).get("reason", "")
        print(f"    no recommendation, nothing verified ({reason})")
        return
    for part, seconds in sorted(row["parts"].items(), key=lambda item: -item[1]):
        print(f"    {part:<42s} {seconds:7.1f}s in {row['calls'][part]} call(s)")
    print(f"    {'rest (edits, checker, saving copies)':<42s} "
          f"{row['verified'][-1] - sum(row['parts'].values()):7.1f}s")
    for recommendation in row["recommendations"]:
        v = recommendation.get("verification") or {}
        print(f"    {recommendation['code']:<24s} {v.get('status', '-'):<14s} {v.get('seconds', 0):6.1f}s "
              f"{v.get('metric') or ''} {v.get('before')} -> {v.get('after')}"
              f"{' training' if v.get('training') else ''}{' (' + v['reason'] + ')' if v.get('reason') else ''}")
    combined = (row["combined"] or {}).get("verification") or {}
    if combined:
        print(f"    {'combined':<24s} {combined.get('status', '-'):<14s} {combined.get('seconds', 0):6.1f}s "
              f"verdict {combined.get('verdict_before')} -> {combined.get('verdict_after')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sigmoid_mlp,sigmoid_mlp_wide,transformer,resnet50,resnet50_no_norm")
    parser.add_argument("--repeats", type=int, default=1, help="audits with remedies, each after a plain audit")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"device=cpu torch={torch.__version__} threads={torch.get_num_threads()}; plain audit (min-max of "
          f"{args.repeats + 1} after a warm-up; their median is 'plain'), audit with remedies (mean of "
          f"{args.repeats}); cost = (remedies - plain) / plain, target <= 1 + 0.5 x N; no_train: the same "
          f"without the training comparison; total = remedies / plain")
    print(f"{'network':<12} {'parameters':>10} {'verdict':<8} {'plain_s':>15} {'remedy_s':>9} {'N':>3} "
          f"{'cost':>8} {'target':>8} {'':<4} {'no_train':>9} {'total':>7}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only.split(","):
            rows.append(measure(name, Path(folder), args.repeats))
            print_row(rows[-1])
    print("\nwhere the time of the audit with remedies went (last run)")
    for row in rows:
        print_detail(row)


if __name__ == "__main__":
    main()
