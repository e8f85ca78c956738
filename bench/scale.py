"""How audit time and peak memory grow with network size, 1M to 100M parameters (and a ~500 MB file).

Each size is exported to ONNX (and TorchScript) and audited in a fresh subprocess, so one size's
memory never counts against another's. Peak memory is the child's peak RSS (VmHWM, reset after
importing the libraries an audit uses) above its RSS then; `x weights` divides that by the size of the weights, so 1.0
would mean one copy.
A backward pass needs a gradient per weight, so the floor is about 2x (weights + gradients).

    .venv/bin/python bench/scale.py                    # 1M 3M 10M 30M 100M, ONNX and TorchScript
    .venv/bin/python bench/scale.py --sizes 1 10 --formats onnx
    .venv/bin/python bench/scale.py --sizes 125        # a ~500 MB ONNX file
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

DEPTH = 4
BATCH = 8


def _width_for(millions: float) -> int:
    """The width of an MLP of DEPTH square layers (plus a small classifier) with about `millions` M parameters."""
    return int((millions * 1e6 / DEPTH) ** 0.5)


def _network(width: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(DEPTH):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10)).eval()


def _export(width: int, folder: Path, network_format: str) -> Path:
    import torch

    network = _network(width)
    warnings.filterwarnings("ignore")
    if network_format == "onnx":
        path = folder / f"mlp-{width}.onnx"
        torch.onnx.export(network, (torch.randn(BATCH, width),), str(path), dynamo=False, input_names=["x"])
    else:
        path = folder / f"mlp-{width}.pt"
        torch.jit.save(torch.jit.trace(network, torch.randn(BATCH, width)), str(path))
    return path


def measure_one(path: Path, width: int, network_format: str) -> dict:
    """Runs in the child: audit one file, report time and memory."""
    import onnx2pytorch  # noqa: F401  imported by the audit on first use: library code, not weights
    import onnxruntime  # noqa: F401

    from bench.memory import peak, reset_peak
    from gradaudit.options import AuditOptions
    from worker.engine import audit_network

    name = "x" if network_format == "onnx" else "input"
    options = AuditOptions(input_shapes={name: [BATCH, width]})
    baseline = reset_peak()  # after imports
    started = time.perf_counter()
    result = audit_network(path, options=options, device="cpu", network_format=network_format)
    seconds = time.perf_counter() - started
    return {"parameters": result.network["parameters"], "seconds": seconds,
            "peak_mb": (peak() - baseline) / 2**20, "file_mb": path.stat().st_size / 2**20}


def _measure_in_child(path: Path, width: int, network_format: str) -> dict:
    command = [sys.executable, __file__, "--child", str(path), str(width), network_format]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1, 3, 10, 30, 100], help="millions of parameters")
    parser.add_argument("--formats", nargs="+", default=["onnx", "torchscript"])
    args = parser.parse_args()
    print(f"{'format':<12}{'params':>12}{'file MB':>10}{'audit s':>10}{'peak MB':>10}{'x weights':>11}{'s per M':>9}")
    with tempfile.TemporaryDirectory() as scratch:
        for millions in args.sizes:
            width = _width_for(millions)
            for network_format in args.formats:
                path = _export(width, Path(scratch), network_format)
                row = _measure_in_child(path, width, network_format)
                path.unlink()
                weights_mb = row["parameters"] * 4 / 2**20
                print(f"{network_format:<12}{row['parameters']:>12,}{row['file_mb']:>10.1f}{row['seconds']:>10.2f}"
                      f"{row['peak_mb']:>10.0f}{row['peak_mb'] / weights_mb:>11.2f}"
                      f"{row['seconds'] / (row['parameters'] / 1e6):>9.3f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        print(json.dumps(measure_one(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
    else:
        main()
