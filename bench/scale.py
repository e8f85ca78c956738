"""How audit time and peak memory grow with network size, 1M to 100M parameters (and a ~500 MB file).

Each size is exported to ONNX (and TorchScript) and audited in a fresh subprocess, so one size's
memory never counts against another's. Peak memory is the child's peak RSS (VmHWM, reset after
importing the libraries an audit uses) above its RSS then; `x weights` divides that by the size of the
weights, so 1.0 would mean one copy.
A backward pass needs a gradient per weight, so the floor is about 2x (weights + gradients).

    .venv/bin/python bench/scale.py                    # 1M 3M 10M 30M 100M, ONNX and TorchScript
    .venv/bin/python bench/scale.py --sizes 1 10 --formats onnx
    .venv/bin/python bench/scale.py --sizes 125        # a ~500 MB ONNX file
    .venv/bin/python bench/scale.py --family transformer --sizes 10 100
    .venv/bin/python bench/scale.py --family embedding --sizes 100   # a token table: nearly all the weights
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
SEQUENCE = 16  # tokens per sequence for the transformer and embedding families
EMBEDDING_WIDTH = 256


def _width_for(family: str, millions: float) -> int:
    """The width giving about `millions` M parameters: DEPTH square layers (MLP), DEPTH encoder layers of
    about 12 d^2 parameters each (transformer, d a multiple of the 8 heads), or the rows of a token table
    EMBEDDING_WIDTH wide (embedding)."""
    if family == "mlp":
        return int((millions * 1e6 / DEPTH) ** 0.5)
    if family == "embedding":
        return int(millions * 1e6 / EMBEDDING_WIDTH)
    return int((millions * 1e6 / (12 * DEPTH)) ** 0.5) // 8 * 8


def _input_shape(family: str, width: int) -> list[int]:
    if family == "embedding":
        return [BATCH, SEQUENCE]  # token ids
    return [BATCH, width] if family == "mlp" else [BATCH, SEQUENCE, width]


def _network(family: str, width: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if family == "mlp":
        layers: list[nn.Module] = []
        for _ in range(DEPTH):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, 10)).eval()

    class MeanOverSequence(nn.Module):
        def forward(self, input):
            return input.mean(1)

    if family == "embedding":
        return nn.Sequential(nn.Embedding(width, EMBEDDING_WIDTH), MeanOverSequence(),
                             nn.Linear(EMBEDDING_WIDTH, 10)).eval()

    # Layers built one by one, so each has its own weights (the exporter stores equal tensors once).
    layers = [nn.TransformerEncoderLayer(width, 8, 4 * width, dropout=0.0, batch_first=True) for _ in range(DEPTH)]
    return nn.Sequential(*layers, MeanOverSequence(), nn.Linear(width, 10)).eval()


def _export(family: str, width: int, folder: Path, network_format: str) -> Path:
    import torch

    network = _network(family, width)
    shape = _input_shape(family, width)
    example = torch.randint(0, width, shape) if family == "embedding" else torch.randn(*shape)
    warnings.filterwarnings("ignore")
    if network_format == "onnx":
        path = folder / f"{family}-{width}.onnx"
        torch.onnx.export(network, (example,), str(path), dynamo=False, input_names=["x"])
    else:
        path = folder / f"{family}-{width}.pt"
        torch.jit.save(torch.jit.trace(network, example, check_trace=False), str(path))
    return path


def measure_one(path: Path, shape: list[int], network_format: str) -> dict:
    """Runs in the child: audit one file, report time and memory."""
    import onnx2pytorch  # noqa: F401  imported by the audit on first use: library code, not weights
    import onnxruntime  # noqa: F401

    from bench.memory import peak, reset_peak
    from gradaudit.options import AuditOptions
    from worker.engine.audit import audit_network

    name = "x" if network_format == "onnx" else "input"
    options = AuditOptions(input_shapes={name: shape})
    baseline = reset_peak()  # after imports
    started = time.perf_counter()
    result = audit_network(path, options=options, device="cpu", network_format=network_format)
    seconds = time.perf_counter() - started
    return {"parameters": result.network["parameters"], "seconds": seconds,
            "peak_mb": (peak() - baseline) / 2**20, "file_mb": path.stat().st_size / 2**20}


def _measure_in_child(path: Path, shape: list[int], network_format: str) -> dict:
    command = [sys.executable, __file__, "--child", str(path), json.dumps(shape), network_format]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1, 3, 10, 30, 100], help="millions of parameters")
    parser.add_argument("--formats", nargs="+", default=["onnx", "torchscript"])
    parser.add_argument("--family", choices=["mlp", "transformer", "embedding"], default="mlp",
                        help="an MLP (Gemm layers in ONNX), a transformer encoder (MatMul layers in ONNX) or a "
                             "token table (Gather in ONNX) with a linear head")
    args = parser.parse_args()
    print(f"family={args.family} batch={BATCH}" + (f" sequence={SEQUENCE}" if args.family != "mlp" else ""))
    print(f"{'format':<12}{'params':>12}{'file MB':>10}{'audit s':>10}{'peak MB':>10}{'x weights':>11}{'s per M':>9}")
    with tempfile.TemporaryDirectory() as scratch:
        for millions in args.sizes:
            width = _width_for(args.family, millions)
            for network_format in args.formats:
                path = _export(args.family, width, Path(scratch), network_format)
                row = _measure_in_child(path, _input_shape(args.family, width), network_format)
                path.unlink()
                weights_mb = row["parameters"] * 4 / 2**20
                print(f"{network_format:<12}{row['parameters']:>12,}{row['file_mb']:>10.1f}{row['seconds']:>10.2f}"
                      f"{row['peak_mb']:>10.0f}{row['peak_mb'] / weights_mb:>11.2f}"
                      f"{row['seconds'] / (row['parameters'] / 1e6):>9.3f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        print(json.dumps(measure_one(Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4])))
    else:
        main()
