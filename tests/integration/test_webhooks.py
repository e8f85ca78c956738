"""Webhooks through a real Redis and a real worker: a finished audit is posted to its receiver, signed; a receiver
that fails twice gets the same body a third time after Celery's exponential backoff, and the three attempts are
listed at /v1/audits/{id}/deliveries; a failed audit is posted too. Loopback receivers are allowed by the setting."""

from __future__ import annotations

import json
import time

import pytest
from torch import nn

from tests.support.receiver import Receiver, key_secret, verifies
from tests.support.stack import Stack, mlp, save_torchscript

pytestmark = pytest.mark.integration

SECRET = "server-webhook-secret-0123456789"
BACKOFF_S = 0.4


@pytest.fixture
def stack(make_settings, sqlite_url, redis_url, tmp_path):
    settings = make_settings(database_url=sqlite_url, broker_url=redis_url, heartbeat_s=0.5, stale_after_s=3,
                             webhook_secret=SECRET, webhook_allow_private=True, webhook_backoff_s=BACKOFF_S,
                             max_verified_remedies=0)
    running = Stack(settings, tmp_path)
    yield running
    running.close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        made.append(Receiver(statuses=statuses))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def deliveries(stack: Stack, audit_id: str, count: int, timeout_s: float = 30) -> list[dict]:
    """Poll the deliveries until `count` are listed."""
    deadline = time.monotonic() + timeout_s
    while len(listed := stack.client.get(f"/v1/audits/{audit_id}/deliveries").json["deliveries"]) < count:
        assert time.monotonic() < deadline, (listed, stack.logs())
        time.sleep(0.1)
    return listed


def test_a_receiver_that_fails_twice_gets_it_the_third_time_after_backing_off(stack, tmp_path, receivers):
    network = save_torchscript(mlp(depth=1, activation=nn.ReLU), tmp_path / "net.pt")
    flaky, plain = receivers(500, 503, 204), receivers(200)
    stack.start_worker()

    audit_id = stack.submit(network, options=json.dumps({"input_shapes": {"x": [4, 32]}, "webhook_url": flaky.url}))
    failed_id = stack.submit(network, options=json.dumps({"webhook_url": plain.url}))  # no input shape: fails
    assert stack.wait_for(audit_id, ("succeeded", "failed"))["status"] == "succeeded"

    attempts = flaky.wait_for(3)
    assert [(d["attempt"], d["status"], d["response_status"]) for d in deliveries(stack, audit_id, 3)] == [
        (1, "failed", 500), (2, "failed", 503), (3, "delivered", 204)]
    first_wait, second_wait = (later.at - earlier.at for earlier, later in zip(attempts, attempts[1:]))
    print(f"attempts 500, 503, 204: waited {first_wait:.2f} s then {second_wait:.2f} s (backoff {BACKOFF_S} s)")
    assert first_wait >= BACKOFF_S and second_wait >= 2 * BACKOFF_S, (first_wait, second_wait)
    assert all(verifies(key_secret(SECRET, None), request) for request in attempts)
    assert len({request.body for request in attempts}) == 1  # the same event each time; only the stamp changes
    assert json.loads(attempts[0].body)["audit"]["status"] == "succeeded"

    stack.wait_for(failed_id, ("failed",))
    [posted] = plain.wait_for(1)
    assert json.loads(posted.body)["audit"]["error"]["code"] == "input_shape_required"
    assert [d["status"] for d in deliveries(stack, failed_id, 1)] == ["delivered"]
    time.sleep(3 * BACKOFF_S)
    assert len(flaky.received) == 3 and len(plain.received) == 1  # delivered once, never again
