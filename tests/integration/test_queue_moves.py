"""A queue with one hostile audit keeps moving: while a time bomb holds one of the worker's audit slots until its
time limit, an ordinary audit submitted after it runs in another slot and finishes first."""

from __future__ import annotations

import pytest
from torch import nn

from suites.hostile_torchscript import LoopsForever
from tests.support.served import FINISHED, Served
from tests.support.stack import mlp, save_torchscript

pytestmark = pytest.mark.integration

BOMB_OPTIONS = '{"input_shapes": {"x": [2, 6]}}'
TINY_OPTIONS = '{"input_shapes": {"x": [2, 32]}}'
TIME_LIMIT_S = 25


def test_an_audit_behind_a_time_bomb_finishes_while_the_bomb_still_runs(tmp_path):
    bomb = save_torchscript(LoopsForever(), tmp_path / "bomb.pt")
    tiny = save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "tiny.pt")
    served = Served(tmp_path, tmp_path / "data", GRADAUDIT_WORKER_CONCURRENCY="2",
                    GRADAUDIT_SOFT_TIME_LIMIT_S=str(TIME_LIMIT_S), GRADAUDIT_HARD_TIME_LIMIT_S=str(TIME_LIMIT_S + 5))
    try:
        served.wait_ready()
        bomb_id = served.submit(bomb, BOMB_OPTIONS)
        served.wait_status(bomb_id, ("running",))
        tiny_id = served.submit(tiny, TINY_OPTIONS)

        assert served.wait_status(tiny_id, FINISHED, timeout_s=TIME_LIMIT_S)["status"] == "succeeded", served.log()
        assert served.audit(bomb_id)["status"] == "running"
        bombed = served.wait_status(bomb_id, FINISHED, timeout_s=2 * TIME_LIMIT_S)
        assert (bombed["status"], bombed["error"]["code"]) == ("failed", "time_limit_exceeded")
    finally:
        served.stop()
