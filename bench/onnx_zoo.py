"""Audit the nine model-zoo networks the onnx wheel ships (onnx/backend/test/data/light) and print time and memory.

Each network runs in its own process, so the peak RSS printed is that network's alone. Their weights are
built at run time by ConstantOfShape nodes (every weight one constant), which the loader folds into
initializers before converting; so onnxruntime parity is a weak check here, conversion and backward are not.

    .venv/bin/python bench/onnx_zoo.py [NAME_SUBSTRING]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def audit_one(path: Path) -> dict:
    """Audit one network in this process; its time, peak RSS and the figures that matter."""
    from gradaudit.errors import AuditError
    from gradaudit.options import AuditOptions
    from worker.engine.audit import audit_network

    start = time.perf_counter()
    try:
        result = audit_network(path, options=AuditOptions(batch_size=1), device="cpu")
    except AuditError as exc:
        return {"ok": False, "error": f"{exc.code}: {exc.detail}", "seconds": time.perf_counter() - start}
    return {"ok": True, "seconds": time.perf_counter() - start, "parameters": result.network["parameters"],
            "layers": result.network["layers"], "parity": result.setup.get("onnxruntime_max_abs_diff"),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    """Run every light network in a child process and print a table."""
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(audit_one(Path(sys.argv[2]))))
        return
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    print(f"{'network':22} {'ok':>3} {'seconds':>8} {'params':>12} {'layers':>6} {'peak RSS MB':>12}  parity")
    passed = 0
    paths = [p for p in sorted(LIGHT.glob("*.onnx")) if pattern in p.name]
    for path in paths:
        child = subprocess.run([sys.executable, __file__, "--one", str(path)], capture_output=True, text=True)
        row = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else {
            "ok": False, "error": child.stderr.strip().splitlines()[-1:], "seconds": 0}
        passed += row["ok"]
        print(f"{path.stem.removeprefix('light_'):22} {'yes' if row['ok'] else 'NO':>3} {row['seconds']:8.1f} "
              f"{row.get('parameters', 0):12,} {row.get('layers', 0):6} {row.get('peak_rss_mb', 0):12.0f}  "
              f"{row.get('parity', row.get('error'))}", flush=True)
    print(f"\nzoo: {passed}/{len(paths)} light networks audit successfully")


if __name__ == "__main__":
    main()
