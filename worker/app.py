"""The worker's Celery app: the shared configuration, our tasks, and the watchdog."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from gradaudit.queue import make_celery
from gradaudit.settings import Settings
from worker.context import build_context
from worker.watchdog import Watchdog

_watchdogs: list[Watchdog] = []


def make_worker_celery(settings: Settings) -> Celery:
    """The Celery app a worker runs, with the audit task registered."""
    celery = make_celery(settings)
    celery.conf.include = ["worker.tasks"]
    celery.conf.worker_concurrency = 1  # one audit per worker: each may use all the GPU's memory

    @worker_ready.connect(weak=False)
    def _start_watchdog(**_kwargs) -> None:
        watchdog = Watchdog(build_context(settings), celery)
        watchdog.start()
        _watchdogs.append(watchdog)

    @worker_shutdown.connect(weak=False)
    def _stop_watchdog(**_kwargs) -> None:
        while _watchdogs:
            _watchdogs.pop().stop()

    return celery


def run_worker(settings: Settings, extra_args: list[str]) -> None:
    """Run a Celery worker in this process until it is stopped."""
    celery = make_worker_celery(settings)
    celery.worker_main(["worker", "--loglevel=INFO", "--queues", "audits", *extra_args])
