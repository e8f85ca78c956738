"""The worker's Celery app: the shared configuration, our tasks (audits and webhooks, one pool), and the periodic
threads."""

from __future__ import annotations

import ctypes
import logging
import signal
import sys

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from gradaudit.queue import QUEUES, make_celery
from gradaudit.settings import Settings
from worker.capacity import audit_slots, this_machine, threads_per_audit
from worker.context import build_context
from worker.liveness import WorkerBeacon
from worker.periodic import Periodic
from worker.retention import RetentionSweeper
from worker.watchdog import Watchdog

logger = logging.getLogger(__name__)
_threads: list[Periodic] = []
PR_SET_PDEATHSIG = 1
# Resolved once in the main process; a pool process only calls it.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def make_worker_celery(settings: Settings) -> Celery:
    """The Celery app a worker runs, with the audit task registered."""
    celery = make_celery(settings)
    celery.conf.include = ["worker.tasks"]
    machine = this_machine()
    slots = audit_slots(settings, machine)
    celery.conf.worker_concurrency = slots
    celery.conf.worker_proc_alive_timeout = 120  # a pool process imports torch before it says it is up

    @worker_ready.connect(weak=False)
    def _start_threads(**_kwargs) -> None:
        logger.info("gradaudit worker: %d audit(s) at once, %d CPU thread(s) each", slots,
                    threads_per_audit(slots, machine))
        context = build_context(settings)
        threads: list[Periodic] = [Watchdog(context, celery), WorkerBeacon(settings, celery)]
        if settings.retention_days is not None:
            threads.append(RetentionSweeper(context))
        for thread in threads:
            thread.start()
            _threads.append(thread)

    @worker_process_init.connect(weak=False)
    def _preload_engine(**_kwargs) -> None:
        # Each audit forks from this pool process: torch and the adapters load once here, outside any time limit.
        from worker.runner import preload_engine

        preload_engine(threads_per_audit(slots, machine))

    @worker_shutdown.connect(weak=False)
    def _stop_threads(**_kwargs) -> None:
        while _threads:
            _threads.pop().stop()

    worker_process_init.connect(_die_with_main_process, weak=False)
    return celery


def _die_with_main_process(**_kwargs) -> None:
    """A pool process ends with the worker's main process: an orphan would run audits no supervisor counts and
    hold their heartbeat after the worker that acks them is gone (Linux; elsewhere the watchdog still copes)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_worker(settings: Settings, extra_args: list[str]) -> None:
    """Run a Celery worker in this process until it is stopped."""
    celery = make_worker_celery(settings)
    celery.worker_main(["worker", "--loglevel=INFO", "--queues", ",".join(QUEUES), *extra_args])
