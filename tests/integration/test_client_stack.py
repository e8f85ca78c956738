"""gradaudit.client and the commands built on it against a live service (`gradaudit serve`: API, embedded Redis, a
real worker running each audit in its sandbox): an audit goes through its phases with a progress that never goes
back, and the client reads, lists, compares and renders what the worker stored."""

from __future__ import annotations

import json
import subprocess

import pytest
from torch import nn

from gradaudit.client import Client, ServiceError
from gradaudit.schema import PHASES
from tests.support.served import CLI, Served, clean_environment
from tests.support.stack import mlp, save_onnx, save_torchscript

pytestmark = pytest.mark.integration

SHAPE = {"input_shapes": {"x": [8, 32]}}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One `gradaudit serve` for the module, ready to run audits; yields (Served, folder)."""
    folder = tmp_path_factory.mktemp("client-stack")
    served = Served(folder, folder / "data")
    try:
        served.wait_ready()
        yield served, folder
    finally:
        served.stop()


@pytest.fixture(scope="module")
def networks(service):
    """A deep sigmoid stack (vanishing gradients, fixes to verify) as TorchScript and a healthy ReLU MLP as ONNX."""
    _, folder = service
    return (save_torchscript(mlp(depth=12, activation=nn.Sigmoid), folder / "deep.pt"),
            save_onnx(mlp(depth=2, activation=nn.ReLU), folder / "shallow.onnx"))


def test_audit_returns_the_typed_report_after_going_through_the_phases(service, networks):
    served, _ = service
    deep, _ = networks
    client = Client(served.url.removeprefix("http://"), poll_interval_s=0.05)
    polls = []

    report = client.audit(deep, SHAPE, timeout=300, on_poll=polls.append)

    assert report["verdict"] in ("warning", "critical"), served.log()
    assert "vanishing_gradient" in [finding["code"] for finding in report["findings"]]
    phases = [poll["phase"] for poll in polls if poll["status"] == "running" and poll["phase"]]
    assert phases, polls
    assert [PHASES.index(phase) for phase in phases] == sorted(PHASES.index(phase) for phase in phases)
    progress = [poll["progress"] for poll in polls if poll["progress"] is not None]
    assert progress == sorted(progress) and progress[-1] == 1.0 and polls[-1]["status"] == "succeeded"
    assert {"loading", "probing", "diagnosing", "verifying"} <= set(report["setup"]["phase_seconds"])
    assert set(report["setup"]["phase_seconds"]) <= set(PHASES)


def test_get_list_compare_and_the_html_report(service, networks):
    served, _ = service
    deep, shallow = networks
    client = Client(served.url)
    healthy = client.audit(shallow, {"verify_remedies": False}, timeout=300)
    vanishing = client.audit(deep, {**SHAPE, "verify_remedies": False}, timeout=300)

    audit = client.get(vanishing["id"])
    listed = [item["id"] for item in client.list(limit=100)["items"]]
    comparison = client.compare(vanishing["id"], healthy["id"])
    page = client.report_html(vanishing["id"])

    assert (audit["status"], audit["progress"], audit["verdict"]) == ("succeeded", 1.0, vanishing["verdict"])
    assert {healthy["id"], vanishing["id"]} <= set(listed) and listed.index(vanishing["id"]) < listed.index(
        healthy["id"])
    assert comparison["regression"] is True
    assert "vanishing_gradient" in [finding["code"] for finding in comparison["findings"]["added"]]
    assert page.lstrip().lower().startswith("<!doctype html")


def test_a_failed_audit_raises_the_code_it_failed_with(service, networks):
    served, _ = service
    deep, _ = networks
    with pytest.raises(ServiceError) as failed:
        Client(served.url, poll_interval_s=0.1).audit(deep, timeout=300)  # TorchScript declares no shapes
    assert (failed.value.code, failed.value.status) == ("input_shape_required", 422)
    assert "input_shapes" in failed.value.detail


def test_submit_wait_in_a_log_and_show(service, networks):
    served, folder = service
    deep, _ = networks
    submitted = subprocess.run([*CLI, "submit", str(deep), "--url", served.url.removeprefix("http://"), "--wait",
                                "--input-shape", "x=8x32", "--json"], capture_output=True, text=True, timeout=300,
                               env=clean_environment())
    report = json.loads(submitted.stdout)
    page = folder / "report.html"
    shown = subprocess.run([*CLI, "show", report["id"], "--url", served.url, "--html", str(page)],
                           capture_output=True, text=True, timeout=60, env=clean_environment())
    refused = subprocess.run([*CLI, "submit", str(deep), "--url", served.url, "--wait", "--json"],
                             capture_output=True, text=True, timeout=300, env=clean_environment())

    assert submitted.returncode == 0, submitted.stderr
    assert "\r" not in submitted.stderr
    lines = [line.split(maxsplit=1)[1] for line in submitted.stderr.splitlines()]
    assert lines[-1] == "succeeded" and len(lines) == len(set(lines))  # one line per change, none repeated
    assert shown.returncode == 0 and shown.stdout.startswith("verdict: ") and "out_grad" in shown.stdout
    assert page.read_text().lstrip().lower().startswith("<!doctype html")
    assert refused.returncode == 2 and json.loads(refused.stdout)["code"] == "input_shape_required"
    assert "--input-shape x=DIMS" in refused.stderr
