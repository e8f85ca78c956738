"""Audit the architectures people actually use, at their library's default initialisation, in the formats a
user exports today; print per network and format: ok or error code, seconds, the audit's peak RSS above what
the process held before it, over the weights' size,
layers tapped, findings, verdict; then `architectures: files=N ok=N failed=N flagged=N`.

Networks are built in code (torchvision, weights=None and weights_backbone=None; transformers from their published
configurations, see bench/transformer_networks.py: nothing is downloaded) and each audit runs in its own
process, so its peak RSS is its own. Formats: `torchscript` (torch.jit.trace), `onnx` (the legacy exporter
with its defaults, which fold BatchNorm into the convolutions), `onnx-unfolded` (legacy, no constant folding:
BatchNorm kept), `dynamo` (torch.onnx.export's default exporter), `pt2` (torch.export.export then save).

    .venv/bin/python bench/architectures.py                       # every network, every format
    .venv/bin/python bench/architectures.py --networks resnet50 mobilenet_v3_large --formats torchscript
    .venv/bin/python bench/architectures.py --networks gpt2 albert --formats torchscript onnx dynamo
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (torchvision builder, input side): sides as small as each architecture allows, to keep a sweep in minutes
# (AlexNet and VGG pool adaptively to 6x6 and 7x7, which the legacy ONNX exporter takes only from 224;
# MaxViT partitions every stage into 7x7 windows, which only 224 divides).
NETWORKS = {
    "alexnet": ("alexnet", 224), "vgg11": ("vgg11", 224), "vgg11_bn": ("vgg11_bn", 224),
    "resnet18": ("resnet18", 64), "resnet50": ("resnet50", 64), "wide_resnet50_2": ("wide_resnet50_2", 64),
    "resnext50_32x4d": ("resnext50_32x4d", 64), "squeezenet1_1": ("squeezenet1_1", 64),
    "densenet121": ("densenet121", 64), "googlenet": ("googlenet", 64), "inception_v3": ("inception_v3", 80),
    "mobilenet_v2": ("mobilenet_v2", 64), "mobilenet_v3_large": ("mobilenet_v3_large", 64),
    "efficientnet_b0": ("efficientnet_b0", 64), "mnasnet1_0": ("mnasnet1_0", 64),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", 64), "regnet_y_400mf": ("regnet_y_400mf", 64),
    "convnext_tiny": ("convnext_tiny", 64), "efficientnet_v2_s": ("efficientnet_v2_s", 64),
    "vit_b_16": ("vit_b_16", 64), "swin_t": ("swin_t", 64), "maxvit_t": ("maxvit_t", 224),
}
# Builder options: no auxiliary heads; ViT's position table sized to the smaller input (4x4 patches of 16).
BUILD_OPTIONS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
    "vit_b_16": {"image_size": 64},
}
# Segmentation and video (torchvision subpackage, builder, one input without its batch dimension).
TASK_NETWORKS = {
    "fcn_resnet50": ("segmentation", "fcn_resnet50", (3, 64, 64)),
    "lraspp_mobilenet_v3_large": ("segmentation", "lraspp_mobilenet_v3_large", (3, 64, 64)),
    "r3d_18": ("video", "r3d_18", (3, 8, 32, 32)),
}
FORMATS = ("torchscript", "onnx", "onnx-unfolded", "dynamo", "pt2")
BATCH = 4


def all_networks() -> list[str]:
    """Every network the benchmark knows: torchvision classification, segmentation and video, then transformers."""
    from bench.transformer_networks import CONFIGS

    return [*NETWORKS, *TASK_NETWORKS, *CONFIGS]


def build(name: str):
    """The network, at its default initialisation, in eval mode, and an input batch for it by input name."""
    import torchvision

    if name in TASK_NETWORKS:
        return _build_task_network(name)
    if name not in NETWORKS:
        from bench.transformer_networks import build_transformer

        return build_transformer(name)
    builder, side = NETWORKS[name]
    torch.manual_seed(0)
    network = getattr(torchvision.models, builder)(weights=None, **BUILD_OPTIONS.get(name, {})).eval()
    return network, {"x": torch.randn(BATCH, 3, side, side)}


class SegmentationOut(torch.nn.Module):
    """A torchvision segmentation network's "out" map (it returns a dict, which tracing refuses)."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network(x)["out"]


def _build_task_network(name: str):
    import torchvision

    package, builder, shape = TASK_NETWORKS[name]
    torch.manual_seed(0)
    # weights_backbone=None: the segmentation builders otherwise download an ImageNet backbone.
    extra = {"weights_backbone": None} if package == "segmentation" else {}
    network = getattr(getattr(torchvision.models, package), builder)(weights=None, **extra).eval()
    if package == "segmentation":
        network = SegmentationOut(network).eval()
    return network, {"x": torch.randn(BATCH, *shape)}


def export(name: str, network_format: str, folder: Path) -> tuple[Path, dict[str, list[int]]]:
    """The network saved in one format under folder, and the shape of each input by name."""
    network, inputs = build(name)
    example = tuple(inputs.values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if network_format == "torchscript":
            path = folder / f"{name}.pt"
            torch.jit.trace(network, example).save(str(path))
        elif network_format == "pt2":
            path = folder / f"{name}.pt2"
            torch.export.save(torch.export.export(network, example), str(path))
        else:
            path = folder / f"{name}.onnx"
            options = {"dynamo": network_format == "dynamo"}
            if network_format == "onnx-unfolded":
                options["do_constant_folding"] = False
            torch.onnx.export(network, example, str(path), **options)
    return path, {input_name: list(tensor.shape) for input_name, tensor in inputs.items()}


def audit_one(name: str, network_format: str, normalization: str = "auto") -> dict:
    """Export and audit one network in this process: what the table prints."""
    from gradaudit.errors import AuditError
    from gradaudit.options import AuditOptions
    from worker.engine.audit import audit_network

    with tempfile.TemporaryDirectory() as scratch:
        try:
            path, input_shapes = export(name, network_format, Path(scratch))
        except Exception as exc:  # the exporter's refusal: not applicable, not an audit failure
            return {"ok": False, "code": "not_exported", "detail": _first_line(exc), "seconds": 0.0}
        before = _rss_mb()
        # TorchScript declares no input shapes; ONNX exports keep the example's.
        shapes = input_shapes if network_format == "torchscript" else {}
        start = time.perf_counter()
        try:
            options = AuditOptions(input_shapes=shapes, batch_size=BATCH, normalization=normalization)
            result = audit_network(path, options=options, device="cpu", external_data_dir=path.parent)
        except AuditError as exc:
            return {"ok": False, "code": exc.code, "detail": exc.detail[:160], "seconds": time.perf_counter() - start}
    weight_layers = [layer for layer in result.layers if layer.parameters]
    return {"ok": True, "seconds": time.perf_counter() - start, "parameters": result.network["parameters"],
            "audit_rss_mb": max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before),
            "tapped": sum(bool(layer.batch_rows) for layer in weight_layers), "weight_layers": len(weight_layers),
            "normalization": result.setup.get("normalization_mode"), "verdict": result.verdict,
            "findings": [f"{f['code']}:{f['severity']}" for f in result.findings if f["severity"] != "info"],
            "evidence": [_evidence(f) for f in result.findings if f["severity"] != "info"]}


def _evidence(finding: dict) -> dict:
    """A finding's code, its layers (first and last few) and the numbers behind it, for --evidence."""
    layers = finding["layers"]
    shown = layers if len(layers) <= 6 else [*layers[:3], f"... {len(layers) - 6} more ...", *layers[-3:]]
    return {"code": finding["code"], "layers": shown, "evidence": finding["evidence"]}


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:160]


def _rss_mb() -> float:
    """This process's resident memory now (the peak so far is what getrusage keeps)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def _row(name: str, network_format: str, row: dict) -> str:
    if not row["ok"]:
        code, detail = row.get("code", "crashed"), row.get("detail", "")
        if code == "not_exported":  # torch's exporter refused it: not applicable, the reason follows
            code, detail = "n/a", f"export failed in torch: {detail}"
        return f"{name:20} {network_format:13} {code:>10} {row['seconds']:6.1f}s  {detail}"
    weights_mb = row["parameters"] * 4 / 2**20
    return (f"{name:20} {network_format:13} {'ok':>10} {row['seconds']:6.1f}s {row['audit_rss_mb'] / weights_mb:6.1f}x "
            f"{row['tapped']:4}/{row['weight_layers']:<4} {row['normalization']:8} {row['verdict']:8} "
            f"{' '.join(row['findings'])}")


def main() -> None:
    """Every chosen network in every chosen format, each in a child process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=all_networks(), choices=all_networks())
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--normalization", default="auto", choices=("auto", "batch", "running"),
                        help="BatchNorm statistics during the probe (running: as an eval-mode probe sees it)")
    parser.add_argument("--evidence", action="store_true",
                        help="after each flagged row, its findings' layers and evidence (one JSON line each)")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(audit_one(*args.one)))
        return
    print(f"{'network':20} {'format':13} {'result':>10} {'time':>7} {'RSS/w':>6} {'tapped':>9} {'BN':8} "
          f"{'verdict':8} findings (warning/critical)")
    counts = {"files": 0, "ok": 0, "failed": 0, "flagged": 0, "not_exported": 0}
    for name in args.networks:
        for network_format in args.formats:
            child = subprocess.run([sys.executable, "-W", "ignore", __file__, "--one", name, network_format,
                                    args.normalization], capture_output=True, text=True, check=False)
            lines = child.stdout.strip().splitlines()
            row = json.loads(lines[-1]) if child.returncode == 0 and lines else {
                "ok": False, "code": "crashed", "detail": (child.stderr.strip().splitlines() or [""])[-1][:160],
                "seconds": 0.0}
            if row.get("code") == "not_exported":
                counts["not_exported"] += 1
            else:
                counts["files"] += 1
                counts["ok" if row["ok"] else "failed"] += 1
            counts["flagged"] += row["ok"] and row["verdict"] != "healthy"
            print(_row(name, network_format, row), flush=True)
            for finding in row.get("evidence", []) if args.evidence else []:
                print("    " + json.dumps(finding, default=str), flush=True)
    print("\narchitectures: " + " ".join(f"{key}={value}" for key, value in counts.items()))


if __name__ == "__main__":
    main()
