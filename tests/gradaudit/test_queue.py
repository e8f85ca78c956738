"""gradaudit.queue: the Celery configuration both sides share, and sending an audit by name."""

from __future__ import annotations

import base64
import json

import pytest

from gradaudit.queue import AUDIT_QUEUE, RUN_AUDIT, celery_config, make_celery, send_audit
from gradaudit.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    """Settings with a memory broker and short, distinct time limits."""
    return load_settings({}, data_dir=tmp_path, broker_url="memory://", soft_time_limit_s=100, hard_time_limit_s=130)


def test_delivery_is_at_least_once(settings):
    config = celery_config(settings)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1


def test_no_result_backend(settings):
    config = celery_config(settings)
    assert config["result_backend"] is None and config["task_ignore_result"] is True


def test_time_limits_come_from_settings(settings):
    config = celery_config(settings)
    assert (config["task_soft_time_limit"], config["task_time_limit"]) == (100, 130)


def test_visibility_timeout_outlasts_the_hard_limit(settings):
    visibility = celery_config(settings)["broker_transport_options"]["visibility_timeout"]
    assert visibility == settings.visibility_timeout_s > celery_config(settings)["task_time_limit"]


def test_default_queue(settings):
    assert celery_config(settings)["task_default_queue"] == AUDIT_QUEUE == "audits"


def test_make_celery_applies_the_config(settings):
    app = make_celery(settings)
    assert app.conf.broker_url == "memory://"
    for key, value in celery_config(settings).items():
        assert app.conf[key] == value, key


def test_send_audit_sends_only_the_id_by_name(settings):
    from kombu.transport.memory import Channel

    Channel.queues.clear()
    send_audit(make_celery(settings), "abc123")
    message = Channel.queues[AUDIT_QUEUE].get_nowait()
    Channel.queues.clear()

    assert message["headers"]["task"] == RUN_AUDIT == "gradaudit.run_audit"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == (["abc123"], {})
