"""What reducing one layer output's gradient costs, with and without an exact max |g| pass, on ResNet-50's layer
outputs at batch 8 (the shapes bench/overhead.py's resnet50_b8 row taps).

    .venv/bin/python bench/tap_reduction.py [--rounds 15]

The tensors (about 320 MB of float32) are reduced in turn, so each arrives cold from memory as it does inside a
backward pass; the two variants alternate round by round. `current` is the recorder's own gradient reduction
(worker/engine/output_stats.py: the exact norm, the sample's copy and its row totals, max |g| among them);
`exact max` adds the `torch.aminmax` pass that gave an exact max |g| before.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.engine.output_stats import grad_sums  # noqa: E402
from worker.engine.sample_rows import SampleRows  # noqa: E402


def layer_outputs() -> list[torch.Tensor]:
    """Random tensors shaped as every leaf module's output of ResNet-50 at batch 8, 128 x 128."""
    import torchvision

    network = torchvision.models.resnet50(weights=None).eval()
    shapes = []
    for module in network.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda _module, _inputs, output: shapes.append(tuple(output.shape)))
    with torch.no_grad():
        network(torch.randn(8, 3, 128, 128))
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator) for shape in shapes]


def current(tensors: list[torch.Tensor]) -> float:
    return _timed(tensors, lambda values, samples: grad_sums(values, samples))


def with_exact_max(tensors: list[torch.Tensor]) -> float:
    def reduce(values, samples):
        grad_sums(values, samples)
        torch.aminmax(values.reshape(-1))

    return _timed(tensors, reduce)


def _timed(tensors: list[torch.Tensor], reduce) -> float:
    """Microseconds per tensor, the rows' totals included."""
    samples = SampleRows()
    started = time.perf_counter()
    for values in tensors:
        reduce(values, samples)
    samples.totals()
    return (time.perf_counter() - started) / len(tensors) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    tensors = layer_outputs()
    megabytes = sum(t.numel() for t in tensors) * 4 / 2 ** 20
    variants = {"current": current, "exact max": with_exact_max}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for name in (list(variants) if round_ % 2 else list(variants)[::-1]):
            times[name].append(variants[name](tensors))
    print(f"torch={torch.__version__} threads={torch.get_num_threads()}; {len(tensors)} ResNet-50 layer outputs at "
          f"batch 8, {megabytes:.0f} MB; us per gradient reduced, median (min) of {args.rounds} rounds")
    for name, values in times.items():
        print(f"{name:<10} {statistics.median(values):7.1f} ({min(values):.1f})")
    saved = statistics.median(times["exact max"]) - statistics.median(times["current"])
    print(f"exact max costs {saved:.0f} us per gradient, {saved * len(tensors) / 1000:.1f} ms per ResNet-50 step")


if __name__ == "__main__":
    main()
