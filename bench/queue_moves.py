"""How long ordinary audits wait behind a time bomb: one audit slot against several, side by side in one run.

    .venv/bin/python bench/queue_moves.py [--slots 1 2] [--time-limit 20] [--behind 3]

For each slot count it starts `gradaudit serve` (GRADAUDIT_WORKER_CONCURRENCY=slots), submits a TorchScript
network that loops forever (it ends at the time limit), and once that runs, `--behind` tiny MLPs. Prints per
slot count `queue: slots=N behind_bomb_s=median/max bomb=CODE after_s` — seconds from each tiny audit's POST to
its final status, and when the bomb ended — and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torch import nn  # noqa: E402

from suites.hostile_torchscript import LoopsForever  # noqa: E402
from tests.support.served import FINISHED, Served  # noqa: E402
from tests.support.stack import mlp, save_torchscript  # noqa: E402

BOMB_OPTIONS = '{"input_shapes": {"x": [2, 6]}}'
TINY_OPTIONS = '{"input_shapes": {"x": [2, 32]}}'


def _measure(folder: Path, slots: int, time_limit_s: int, behind: int) -> tuple[list[float], str, float]:
    bomb = save_torchscript(LoopsForever(), folder / "bomb.pt")
    tiny = save_torchscript(mlp(depth=1, activation=nn.ReLU), folder / "tiny.pt")
    served = Served(folder, folder / "data", GRADAUDIT_WORKER_CONCURRENCY=str(slots),
                    GRADAUDIT_SOFT_TIME_LIMIT_S=str(time_limit_s), GRADAUDIT_HARD_TIME_LIMIT_S=str(time_limit_s + 5))
    try:
        served.wait_ready()
        started = time.monotonic()
        bomb_id = served.submit(bomb, BOMB_OPTIONS)
        served.wait_status(bomb_id, ("running",))
        posted = {served.submit(tiny, TINY_OPTIONS): time.monotonic() for _ in range(behind)}
        waits = _seconds_to_final(served, posted, timeout_s=10 * time_limit_s)
        bombed = served.wait_status(bomb_id, FINISHED, timeout_s=10 * time_limit_s)
        return waits, bombed["error"]["code"], time.monotonic() - started
    finally:
        served.stop()


def _seconds_to_final(served: Served, posted: dict[str, float], timeout_s: float) -> list[float]:
    """Seconds from each audit's POST to the poll that first saw it succeeded (polled together, 0.2 s apart)."""
    waits: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(waits) < len(posted) and time.monotonic() < deadline:
        for audit_id, posted_at in posted.items():
            if audit_id not in waits and (audit := served.audit(audit_id))["status"] in FINISHED:
                assert audit["status"] == "succeeded", audit
                waits[audit_id] = time.monotonic() - posted_at
        time.sleep(0.2)
    assert len(waits) == len(posted), f"not final after {timeout_s} s: {set(posted) - set(waits)}"
    return list(waits.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--time-limit", type=int, default=20, help="the bomb's soft time limit, seconds")
    parser.add_argument("--behind", type=int, default=3, help="tiny audits submitted behind the bomb")
    arguments = parser.parse_args()
    medians = {}
    for slots in arguments.slots:
        with tempfile.TemporaryDirectory(prefix="gradaudit-queue-") as folder:
            waits, code, bomb_s = _measure(Path(folder), slots, arguments.time_limit, arguments.behind)
        medians[slots] = statistics.median(waits)
        print(f"queue: slots={slots} behind_bomb_s={medians[slots]:.1f}/{max(waits):.1f} bomb={code} "
              f"after_s={bomb_s:.1f}", flush=True)
    first, *rest = arguments.slots
    for slots in rest:
        print(f"queue: wait behind the bomb, slots={first} / slots={slots}: {medians[first] / medians[slots]:.1f}x")


if __name__ == "__main__":
    main()
