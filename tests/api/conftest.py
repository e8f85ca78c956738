"""API fixtures: a fresh app per test on a migrated SQLite database, and tiny networks to upload."""

from __future__ import annotations

import base64
import io
import json
import warnings

import pytest

from api import create_app
from models import audits as audit_rows
from tests.support.api_rows import SHA256, create_keys


@pytest.fixture
def settings(make_settings, sqlite_url):
    """Settings on this test's own SQLite database, with kombu's in-memory broker."""
    return make_settings(database_url=sqlite_url)


@pytest.fixture
def app(settings):
    """A fresh app."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """A test client of the fresh app."""
    return app.test_client()


@pytest.fixture
def services(app):
    """The app's services (sessions, store, celery)."""
    return app.extensions["gradaudit"]


def _tiny_network():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()


@pytest.fixture(scope="session")
def torchscript_bytes() -> bytes:
    """A scripted two-layer network saved with torch.jit.save."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, yet users still upload its archives
        torch.jit.save(torch.jit.script(_tiny_network()), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def onnx_bytes() -> bytes:
    """The same network exported with the legacy (TorchScript-based) ONNX exporter."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter is deprecated, yet its files are common
        torch.onnx.export(_tiny_network(), (torch.zeros(1, 4),), buffer, dynamo=False, input_names=["x"])
    return buffer.getvalue()


@pytest.fixture(scope="session")
def state_dict_bytes() -> bytes:
    """A torch.save checkpoint (zip container holding a pickle)."""
    import torch

    buffer = io.BytesIO()
    torch.save(_tiny_network().state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def legacy_pickle_bytes() -> bytes:
    """A torch.save checkpoint in the legacy, bare-pickle format."""
    import torch

    buffer = io.BytesIO()
    torch.save(_tiny_network().state_dict(), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def npz_bytes() -> bytes:
    """A numpy.savez batch for the tiny network."""
    import numpy

    buffer = io.BytesIO()
    numpy.savez(buffer, x=numpy.zeros((2, 4), dtype="float32"))
    return buffer.getvalue()


@pytest.fixture
def submit(client):
    """POST /v1/audits with `content` as the `model` file and extra form fields."""

    def post(content: bytes, filename: str = "net.pt", **fields):
        form = {"model": (io.BytesIO(content), filename), **fields}
        return client.post("/v1/audits", data=form, content_type="multipart/form-data")

    return post


@pytest.fixture(autouse=True)
def empty_memory_broker():
    """kombu's memory transport keeps its queues on a class: start every test with none."""
    from kombu.transport.memory import Channel

    Channel.queues.clear()
    yield
    Channel.queues.clear()


@pytest.fixture
def sent_messages():
    """Drain the in-memory `audits` queue: each message as (task name, args)."""

    def drain() -> list[tuple[str, list]]:
        from kombu.transport.memory import Channel

        queue = Channel.queues.get("audits")
        messages = []
        while queue is not None and not queue.empty():
            messages.append(decode_task_message(queue.get_nowait()))
        return messages

    return drain


def decode_task_message(message: dict) -> tuple[str, list]:
    """A kombu virtual-transport message (base64 JSON body) as (task name, args)."""
    assert message["properties"]["body_encoding"] == "base64"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args


@pytest.fixture
def decode_message():
    """decode_task_message, for tests that read messages from a real broker."""
    return decode_task_message


@pytest.fixture
def keys(services):
    """alice's and bob's keys and the admin ops's: name -> (key id, secret). They count where the module turns auth
    on in its own app fixture."""
    return create_keys(services, ("alice", "bob", "ops"))


@pytest.fixture
def new_audit(services):
    """Insert a queued audit; returns its id."""

    def insert() -> str:
        with services.sessions() as db_session:
            audit = audit_rows.create_audit(db_session=db_session, artifact_sha256=SHA256,
                                            artifact_format="torchscript", artifact_size=100, filename="net.pt",
                                            options={"batch_size": 8})
            return audit.id

    return insert
