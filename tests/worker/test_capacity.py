"""How many audits a worker runs at once (worker/capacity.py): bounded by CPUs and by the memory budget, one on a
GPU, the setting when given; and the CPUs shared among them."""

from __future__ import annotations

import pytest

from worker.app import make_worker_celery
from worker.capacity import Machine, audit_slots, this_machine, threads_per_audit

GIB = 1024**3


@pytest.mark.parametrize(("cpus", "memory_gib", "audit_mb", "slots"), [
    (2, 24, None, 2),      # the default budget is half the machine: two fit
    (16, 128, 8192, 16),   # memory for sixteen 8 GiB audits, and sixteen CPUs
    (16, 128, 32768, 4),   # memory bounds it
    (2, 128, 4096, 2),     # CPUs bound it
    (8, 4, 8192, 1),       # a budget past the machine still runs one
])
def test_slots_are_bounded_by_cpus_and_by_memory(make_settings, cpus, memory_gib, audit_mb, slots):
    machine = Machine(cpus=cpus, memory_bytes=memory_gib * GIB, has_gpu=False)
    settings = make_settings(audit_memory_mb=audit_mb, device="cpu")
    if audit_mb is None:  # the default budget is half of *this* machine: judge it against this machine's memory
        machine = Machine(cpus=cpus, memory_bytes=this_machine().memory_bytes, has_gpu=False)
    assert audit_slots(settings, machine) == slots


@pytest.mark.parametrize(("device", "has_gpu", "slots"), [
    ("auto", True, 1), ("cuda", True, 1), ("cuda:1", True, 1), ("auto", False, 8), ("cpu", True, 8)])
def test_a_gpu_runs_one_audit_at_a_time(make_settings, device, has_gpu, slots):
    machine = Machine(cpus=8, memory_bytes=128 * GIB, has_gpu=has_gpu)
    assert audit_slots(make_settings(device=device, audit_memory_mb=4096), machine) == slots


def test_the_setting_wins(make_settings):
    machine = Machine(cpus=2, memory_bytes=4 * GIB, has_gpu=True)
    assert audit_slots(make_settings(worker_concurrency=3), machine) == 3


def test_the_cpus_are_shared_among_the_slots():
    machine = Machine(cpus=16, memory_bytes=64 * GIB, has_gpu=False)
    assert [threads_per_audit(slots, machine) for slots in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]


def test_the_worker_runs_as_many_audits_as_slots(make_settings):
    settings = make_settings(worker_concurrency=3)
    assert make_worker_celery(settings).conf.worker_concurrency == 3
