"""Run the hostile corpus (suites/hostile.py) against a live `gradaudit serve` and count what went wrong.

    .venv/bin/python bench/hostile.py                 # starts its own serve on a temporary data dir
    .venv/bin/python bench/hostile.py --url URL [--serve-log PATH]

Prints one line per case (`ok` or what differed) and then
`hostile: cases=N server_errors=N leaks=N stuck=N worker_restarts=N`: server_errors counts 5xx answers (to the
POST and to the finished audit's report), leaks the planted secret in any answer plus marker files hostile code
managed to write, stuck the accepted audits not final within the timeout, worker_restarts the worker restarts
serve's supervisor logged ("gradaudit: worker ... restarting"; 0 with --url and no --serve-log).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suites.hostile import CASES, Ground
from suites.hostile_run import plain_audit_succeeds, run_corpus, summary, worker_restarts

# Short limits so the time and memory bombs end in seconds; the corpus's own network needs far less.
QUICK_LIMITS = {"GRADAUDIT_SOFT_TIME_LIMIT_S": "8", "GRADAUDIT_HARD_TIME_LIMIT_S": "12",
                "GRADAUDIT_AUDIT_MEMORY_MB": "2048", "GRADAUDIT_MAX_EXTRACTED_MB": "64"}


def _report(outcomes, ground: Ground) -> None:
    for outcome in outcomes:
        problems = outcome.problems(ground)
        seen = f"{outcome.post_status} {outcome.post_code} -> {outcome.final_status} {outcome.final_code}"
        print(f"{outcome.case.category:12} {outcome.case.name:30} {seen:60} {'; '.join(problems) or 'ok'}")


def _run(url: str, ground: Ground, serve_log: Path | None, timeout_s: float) -> None:
    outcomes = run_corpus(url, CASES, ground, timeout_s)
    _report(outcomes, ground)
    print(f"alive afterwards: {plain_audit_succeeds(url, ground)}")
    print(summary(outcomes, ground, worker_restarts(serve_log) if serve_log else 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: start `gradaudit serve`)")
    parser.add_argument("--serve-log", type=Path, help="that service's log, to count worker restarts")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for every accepted audit to end")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gradaudit-hostile-") as folder:
        ground = Ground.create()
        if arguments.url:
            _run(arguments.url.rstrip("/"), ground, arguments.serve_log, arguments.timeout)
            ground.remove()
            return
        from tests.support.served import Served

        served = Served(Path(folder), Path(folder) / "data", **QUICK_LIMITS)
        try:
            served.wait_ready()
            _run(served.url, ground, served.log_path, arguments.timeout)
        finally:
            served.stop()
            ground.remove()


if __name__ == "__main__":
    main()
