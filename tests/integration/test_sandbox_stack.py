"""Hostile networks against a real worker: each audit's child dies alone, with a final code, and the same
worker process takes the next audit."""

from __future__ import annotations

import time

import pytest
from torch import nn

from tests.support.stack import Stack, mlp, save_torchscript

pytestmark = pytest.mark.integration


class TimeBomb(nn.Module):
    """A loop that never ends, inside TorchScript's interpreter: native code no Python signal interrupts."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(32, 3)

    def forward(self, x):
        steps = 0
        while steps >= 0:
            x = x * 1.0
            steps = steps + 1
        return self.out(x)


@pytest.fixture
def short_stack(make_settings, sqlite_url, redis_url, tmp_path):
    """A real stack whose audits may run 4 s."""
    settings = make_settings(database_url=sqlite_url, broker_url=redis_url, heartbeat_s=0.5, stale_after_s=3,
                             soft_time_limit_s=4, hard_time_limit_s=30)
    running = Stack(settings, tmp_path)
    yield running
    running.close()


def test_a_time_bomb_fails_once_and_the_worker_audits_the_next_network(short_stack, tmp_path):
    worker = short_stack.start_worker()
    bomb = save_torchscript(TimeBomb(), tmp_path / "bomb.pt")
    tiny = save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "tiny.pt")
    shape = '{"input_shapes": {"x": [2, 32]}}'

    started = time.monotonic()
    bomb_id, next_id = short_stack.submit(bomb, options=shape), short_stack.submit(tiny, options=shape)
    failed = short_stack.wait_for(bomb_id, ("succeeded", "failed"), timeout_s=60)
    took = time.monotonic() - started
    succeeded = short_stack.wait_for(next_id, ("succeeded", "failed"), timeout_s=60)

    assert (failed["status"], failed["error"]["code"], failed["attempts"]) == ("failed", "time_limit_exceeded", 1), (
        failed, short_stack.logs())
    assert took < 20, short_stack.logs()
    assert succeeded["status"] == "succeeded", short_stack.logs()
    assert worker.process.poll() is None
    time.sleep(4)  # a redelivery, had there been one, would have claimed it again by now
    assert short_stack.audit(bomb_id)["attempts"] == 1
