"""What the per-audit sandboxed child costs: a 3-layer MLP audited in this process (the engine alone, as before
the sandbox) and through the forked, confined child (worker/sandbox), in adjacent pairs; then, optionally, POST
to report through a live `gradaudit serve` (the embedded default) for this tree and for another checkout.

    .venv/bin/python bench/sandbox_overhead.py [--repeats 21]
    .venv/bin/python bench/sandbox_overhead.py --serve [--before-tree /tmp/gradaudit-before]

Pairs alternate their order, so a warm cache favours neither. Prints the median of each side and of the pairs'
differences; with --serve, the median POST-to-report seconds of each tree (`git worktree add` the commit before
the sandbox to get a before tree; it runs with this venv).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
from torch import nn

from gradaudit.options import AuditOptions
from gradaudit.settings import load_settings
from worker.engine.audit import audit_network
from worker.runner import _run_here, run_artifact

OPTIONS = '{"input_shapes": {"x": [8, 32]}}'


class Mlp3(nn.Module):
    """Three Linear layers, ReLU between: the issue's yardstick."""

    def __init__(self):
        super().__init__()
        self.one, self.two, self.three = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.three(torch.relu(self.two(torch.relu(self.one(x)))))


def save_network(folder: Path) -> Path:
    """The MLP as TorchScript."""
    path = folder / "mlp3.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Mlp3()), path)
    return path


def engine_pairs(path: Path, folder: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per audit in this process and through the sandboxed child, in alternating adjacent pairs."""
    settings = load_settings({}, data_dir=folder / "data")
    options = AuditOptions.model_validate_json(OPTIONS)

    def here():
        return _run_here(path, "torchscript", options=options, inputs_path=None, settings=settings,
                         work_dir=folder / "here", run_engine=audit_network, data_dir=None)

    def child():
        return run_artifact(path, "torchscript", options=options, inputs_path=None, settings=settings,
                            work_dir=folder / "child", run_engine=audit_network)

    here(), child()  # warm both: first imports, the sandbox user
    inline, sandboxed = [], []
    for index in range(repeats):
        order = [(here, inline), (child, sandboxed)]
        for run, times in order if index % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            outcome = run()
            times.append(time.perf_counter() - started)
            assert not hasattr(outcome, "code"), outcome
    return inline, sandboxed


def serve_times(tree: Path, network: Path, repeats: int) -> list[float]:
    """POST-to-report seconds through `gradaudit serve` run from tree, with a fresh data dir."""
    port = 18000 + uuid.uuid4().int % 1000
    data_dir = Path(tempfile.mkdtemp(prefix="gradaudit-bench-"))
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir",
                               str(data_dir)], cwd=tree, env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base)
        post_and_report(base, network)  # warm the worker's pool process
        times = [post_and_report(base, network) for _ in range(repeats)]
        print(f"  {tree}: setup.sandbox of the last audit: {_last_sandbox(base)}")
        return times
    finally:
        server.terminate()
        server.wait(60)


def post_and_report(base: str, network: Path) -> float:
    """Seconds from POST to a succeeded report."""
    boundary = uuid.uuid4().hex
    body = _multipart(boundary, network)
    started = time.perf_counter()
    request = urllib.request.Request(f"{base}/v1/audits", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    audit_id = json.load(urllib.request.urlopen(request))["id"]
    while True:
        audit = json.load(urllib.request.urlopen(f"{base}/v1/audits/{audit_id}"))
        if audit["status"] in ("succeeded", "failed"):
            assert audit["status"] == "succeeded", audit
            return time.perf_counter() - started
        time.sleep(0.01)


def _last_sandbox(base: str) -> list[str] | None:
    """The confinement the newest audit's child reported (None for a tree from before the sandbox)."""
    newest = json.load(urllib.request.urlopen(f"{base}/v1/audits?limit=1"))["items"][0]
    report = json.load(urllib.request.urlopen(f"{base}/v1/audits/{newest['id']}/report"))
    return report["setup"].get("sandbox")


def _multipart(boundary: str, network: Path) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n{OPTIONS}\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="model"; filename="{network.name}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n".encode() + network.read_bytes() + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    return b"".join(parts)


def _wait_healthy(base: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if json.load(urllib.request.urlopen(f"{base}/healthz", timeout=2)).get("worker", True):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"serve at {base} did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--serve", action="store_true", help="also POST to report through gradaudit serve")
    parser.add_argument("--before-tree", type=Path, help="a checkout from before the sandbox, for --serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gradaudit-sandbox-bench-") as scratch:
        folder = Path(scratch)
        network = save_network(folder)
        inline, sandboxed = engine_pairs(network, folder, args.repeats)
        differences = [child - here for here, child in zip(inline, sandboxed)]
        print(f"engine, 3-layer MLP, {args.repeats} pairs: in-process median {statistics.median(inline):.3f} s, "
              f"sandboxed child median {statistics.median(sandboxed):.3f} s, "
              f"median difference {statistics.median(differences):+.3f} s")
        if args.serve:
            trees = [("this tree", ROOT)] + ([("before tree", args.before_tree)] if args.before_tree else [])
            for label, tree in trees:
                times = serve_times(tree, network, args.repeats)
                print(f"serve, POST to report, {label} ({tree}): median {statistics.median(times):.3f} s, "
                      f"min {min(times):.3f} s over {len(times)}")


if __name__ == "__main__":
    main()
