"""Overhead of the instrumented probe against a plain forward+backward, on networks of realistic size.

    .venv/bin/python bench/overhead.py [--device cpu|cuda] [--repeats 9] [--only resnet50,transformer_b6,...]

For each network and format (ONNX through our converter, TorchScript), times a plain forward+backward and
the instrumented probe of one batch (every layer output tapped, its statistics reduced on the device, one
host transfer) side by side in this process, in adjacent pairs, and prints the best time of each and the
median of the pairs' ratios with its quartiles. On this shared 2-core VM the machine's speed drifts by 10-15%
over seconds to minutes; two runs a few hundred ms apart see the same speed, so the ratio within a pair
cancels the drift that a ratio of the two best times (taken minutes apart) does not: those gave ResNet-50
ONNX anything from 0.99x to 1.16x on one build. Pairs alternate their order (plain first, then instrumented
first), so whatever a run leaves behind for the next (warm caches, a freed heap) favours neither variant.
Peak memory: on CUDA torch.cuda.max_memory_allocated in this process; on CPU the peak RSS growth of one step,
measured in a fresh subprocess per variant (the kernel's high-water mark is reset just before the step).
Parameter-gradient statistics are computed once per audit, not per batch, and are not part of either variant.
ResNet-50 and the transformer also run at a smaller batch (resnet50_b8, transformer_b6), where the plain step
is shorter (about 0.35 s and 0.13 s on the 2-core VM): what a tapped output costs beyond work in proportion
to its size (torch calls, hooks) weighs more there. `us/tap` is what one tapped output (its value and its
gradient) adds to the step: the median of the pairs' differences (instrumented - plain) over the outputs
observed in one step.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import peak, reset_peak  # noqa: E402
from worker.engine.formats import load_network, taps_for  # noqa: E402
from worker.engine.output_stats import Recorder  # noqa: E402
from worker.engine.probe import make_loss, pick_output, run_probe  # noqa: E402

TIME_TARGET, MEMORY_TARGET = 1.10, 1.3


class TransformerClassifier(nn.Module):
    """A 6-layer transformer encoder (d=256, 4 heads, ff=1024) with a linear head on the mean token."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class RecurrentClassifier(nn.Module):
    """A 2-layer LSTM (256 -> 512) with a linear head on the last step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(256, 512, num_layers=2, batch_first=True)
        self.head = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(x)
        return self.head(hidden[:, -1])


def networks() -> dict[str, tuple]:
    """name -> (builder, example input shape)."""
    import torchvision

    resnet50 = functools.partial(torchvision.models.resnet50, weights=None)
    return {
        "resnet50": (resnet50, (16, 3, 128, 128)),
        "resnet50_b8": (resnet50, (8, 3, 128, 128)),
        "transformer": (TransformerClassifier, (8, 128, 256)),
        "transformer_b6": (TransformerClassifier, (6, 128, 256)),
        "lstm": (RecurrentClassifier, (16, 64, 256)),
    }


def export(name: str, folder: Path) -> dict[str, Path]:
    """The network saved as ONNX (legacy exporter, opset 17) and as traced TorchScript."""
    builder, shape = networks()[name]
    torch.manual_seed(0)
    network = builder().eval()
    example = torch.randn(shape)
    paths = {"onnx": folder / f"{name}.onnx", "torchscript": folder / f"{name}.pt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (example,), str(paths["onnx"]), dynamo=False, opset_version=17,
                          input_names=["x"])
        torch.jit.save(torch.jit.trace(network, example, check_trace=False), str(paths["torchscript"]))
    return paths


class Bench:
    """One loaded network on a device, able to run either variant once."""

    def __init__(self, path: Path, shape: tuple, device: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.network = load_network(path)
        self.module = self.network.module.to(device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(True)
        self.inputs = [torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)]
        self.taps = taps_for(self.network)

    def plain(self) -> None:
        """Forward, loss and backward with nothing attached."""
        self.module.zero_grad(set_to_none=True)
        _, output = pick_output(self.module(*self.inputs))
        _, loss = make_loss(output, "auto", torch.Generator().manual_seed(0))
        loss.backward()
        float(loss.detach())  # the plain step also ends with the loss on the host

    def instrumented(self) -> int:
        """The engine's probe of one batch with every layer output tapped, then its one host transfer; the
        number of outputs observed."""
        recorder = Recorder([layer.kind for layer in self.taps.layers])
        with self.taps.forward(self.module, recorder) as forward:
            run_probe(self.module, forward, [self.inputs], loss="auto", seeds=[0], recorder=recorder)
        table, _ = recorder.fetch()
        return sum(row is not None for row in table[0])


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(step, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def time_pairs(bench: Bench, device: str, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of plain and instrumented runs, one pair per repeat, each pair's order alternating."""
    for _ in range(2):
        bench.plain(), bench.instrumented()
    plain, instrumented = [], []
    for pair in range(repeats):
        if pair % 2:
            instrumented.append(timed(bench.instrumented, device))
            plain.append(timed(bench.plain, device))
        else:
            plain.append(timed(bench.plain, device))
            instrumented.append(timed(bench.instrumented, device))
    return plain, instrumented


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The first quartile, the median and the third quartile."""
    first, median, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, median, third


def cuda_peak(bench: Bench, variant: str) -> int:
    """Bytes allocated at the peak of one step above what was allocated before it."""
    getattr(bench, variant)()
    bench.module.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    getattr(bench, variant)()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def rss_peak_growth(bench: Bench, variant: str) -> int:
    """Bytes of peak RSS growth during one step, after one warm-up step of the same variant."""
    getattr(bench, variant)()
    bench.module.zero_grad(set_to_none=True)
    before = reset_peak()
    getattr(bench, variant)()
    return peak() - before


def memory_in_child(path: Path, shape: tuple, variant: str) -> int:
    """rss_peak_growth of one variant in a fresh interpreter."""
    command = [sys.executable, __file__, "--child", str(path), ",".join(map(str, shape)), variant]
    # A fixed mmap threshold makes glibc return large freed blocks at once, so a warm-up step does not leave
    # a heap that hides the measured step's growth.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"]


def measure(name: str, fmt: str, path: Path, device: str, repeats: int) -> dict:
    """Times in this process, memory per variant (child processes on CPU)."""
    shape = networks()[name][1]
    bench = Bench(path, shape, device)
    plain, instrumented = time_pairs(bench, device, repeats)
    if device.startswith("cuda"):
        memory = {variant: cuda_peak(bench, variant) for variant in ("plain", "instrumented")}
    else:
        memory = {variant: memory_in_child(path, shape, variant) for variant in ("plain", "instrumented")}
    extra = statistics.median(i - p for p, i in zip(plain, instrumented))
    return {"network": name, "format": fmt, "layers": len(bench.taps.layers), "tapped": bench.taps.tapped,
            "plain_s": min(plain), "instrumented_s": min(instrumented),
            "time_ratio": quartiles([i / p for p, i in zip(plain, instrumented)]),
            "us_per_tap": extra / bench.instrumented() * 1e6, "plain_mb": memory["plain"] / 2**20,
            "instrumented_mb": memory["instrumented"] / 2**20}


def print_row(row: dict) -> None:
    first, time_ratio, third = row["time_ratio"]
    memory_ratio = row["instrumented_mb"] / row["plain_mb"] if row["plain_mb"] > 0 else float("nan")
    print(f"{row['network']:<14} {row['format']:<12} {row['tapped']:>4}/{row['layers']:<4} "
          f"{row['plain_s']:>8.3f} {row['instrumented_s']:>8.3f} {time_ratio:>6.3f}x {first:.3f}-{third:.3f} "
          f"{'ok' if time_ratio <= TIME_TARGET else 'MISS':<4} {row['us_per_tap']:>7.0f} "
          f"{row['plain_mb']:>9.1f} {row['instrumented_mb']:>9.1f} {memory_ratio:>6.2f}x "
          f"{'ok' if memory_ratio <= MEMORY_TARGET else 'MISS'}", flush=True)


def _at_least_two(text: str) -> int:
    if int(text) < 2:
        raise argparse.ArgumentTypeError("at least 2 pairs: quartiles need two ratios")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=_at_least_two, default=9, help="pairs of runs (quartiles need two)")
    parser.add_argument("--only", default=",".join(networks()))
    parser.add_argument("--child", nargs=3, metavar=("PATH", "SHAPE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, shape, variant = args.child
        bench = Bench(Path(path), tuple(int(d) for d in shape.split(",")), "cpu")
        print(json.dumps({"peak_bytes": rss_peak_growth(bench, variant)}))
        return
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"pairs={args.repeats} (best times; median pair ratio, its quartiles); "
          f"targets: time <= {TIME_TARGET}x, peak memory <= {MEMORY_TARGET}x")
    print(f"{'network':<14} {'format':<12} {'tapped':>9} {'plain_s':>8} {'instr_s':>8} {'time':>7} "
          f"{'quartiles':<11} {'':<4} {'us/tap':>7} "
          f"{'plain_MB':>9} {'instr_MB':>9} {'memory':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only.split(","):
            for fmt, path in export(name, Path(folder)).items():
                print_row(measure(name, fmt, path, args.device, args.repeats))


if __name__ == "__main__":
    main()
