"""The commands that talk to a service (show, submit, compare) through gradaudit.client: `show` in each of an audit's
states, --url without a scheme, the problem JSON on failure, and `submit --wait`'s progress on a non-terminal, against
a real app served over HTTP (the worker's part played by writing the audit's row as it does)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner

from api import create_app
from cli.main import main
from gradaudit.client import Client
from models import audits as audit_rows
from tests.support.api_rows import claim
from tests.support.reports import NETWORK, SETUP, finding, layer
from tests.support.threaded_app import serving

LAYERS = [layer("/0/Gemm", 0, grad_norm=1e-4, output_grad_norm=7e-5), layer("/1/Gemm", 1, grad_norm=1e-2)]


@pytest.fixture
def service(make_settings, sqlite_url):
    """The app on an ephemeral port; yields (base URL without its scheme, app)."""
    app = create_app(make_settings(database_url=sqlite_url))
    with serving(app) as url:
        yield url.removeprefix("http://"), app


@pytest.fixture
def network(tmp_path):
    """A minimal ONNX ModelProto on disk (the service only sniffs it here)."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"\x08\x07:\x00")
    return path


def gradaudit(*arguments: str):
    """Run the command as a user would; the result."""
    return CliRunner().invoke(main, list(arguments))


def queued(address: str, network) -> str:
    return Client(address).submit(network)["id"]


def running(app, audit_id: str, phase: str, progress: float) -> None:
    services = app.extensions["gradaudit"]
    claim(services, audit_id)
    with services.sessions() as db_session:
        audit_rows.record_progress(db_session=db_session, audit_id=audit_id, worker_id="worker-1", phase=phase,
                                   progress=progress)


def succeed(app, audit_id: str, findings=()) -> None:
    with app.extensions["gradaudit"].sessions() as db_session:
        assert audit_rows.succeed_audit(db_session=db_session, audit_id=audit_id, worker_id="worker-1",
                                        layers=LAYERS, result={"network": NETWORK, "setup": SETUP,
                                                               "findings": list(findings), "verdict": "critical"})


def fail(app, audit_id: str, code: str, detail: str) -> None:
    with app.extensions["gradaudit"].sessions() as db_session:
        audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=code, detail=detail)


def test_show_a_succeeded_audit_as_text_json_and_html(service, network, tmp_path):
    address, app = service
    audit_id = queued(address, network)
    running(app, audit_id, "probing", 0.3)
    succeed(app, audit_id, [finding("vanishing_gradient", "critical")])
    page = tmp_path / "report.html"

    text = gradaudit("show", audit_id, "--url", address)
    as_json = gradaudit("show", audit_id, "--url", f"http://{address}/", "--json")
    html = gradaudit("show", audit_id, "--url", address, "--html", str(page))

    assert text.exit_code == as_json.exit_code == html.exit_code == 0, (text.output, as_json.output, html.output)
    assert text.stdout.startswith("verdict: CRITICAL") and "out_grad" in text.stdout
    assert json.loads(as_json.stdout)["findings"][0]["code"] == "vanishing_gradient"
    assert page.read_text().lstrip().lower().startswith("<!doctype html") and f"wrote {page}" in html.stderr


def test_show_an_unfinished_audit_says_where_it_is(service, network):
    address, app = service
    waiting = queued(address, network)
    busy = queued(address, network)
    running(app, busy, "checking_parity", 0.05)

    assert gradaudit("show", waiting, "--url", address).stdout.startswith(f"audit {waiting}: queued [")
    line = gradaudit("show", busy, "--url", address).stdout
    assert line.startswith(f"audit {busy}: running (checking parity) [#") and "5%" in line
    document = json.loads(gradaudit("show", busy, "--url", address, "--json").stdout)
    assert (document["status"], document["phase"], document["progress"]) == ("running", "checking_parity", 0.05)


def test_show_a_failed_or_unknown_audit_exits_2_with_its_code_and_with_json_its_problem(service, network, tmp_path):
    address, app = service
    audit_id = queued(address, network)
    fail(app, audit_id, "input_shape_required", "input 'x' has no declared shape; pass input_shapes={'x': [...]}")

    text = gradaudit("show", audit_id, "--url", address)
    as_json = gradaudit("show", audit_id, "--url", address, "--json")
    html = gradaudit("show", audit_id, "--url", address, "--html", str(tmp_path / "r.html"))
    unknown = gradaudit("show", "nope", "--url", address, "--json")

    assert text.exit_code == as_json.exit_code == html.exit_code == unknown.exit_code == 2
    assert text.stderr == ("error [input_shape_required]: input 'x' has no declared shape; give its shape with "
                           "--input-shape x=DIMS, batch first (e.g. --input-shape x=8x32)\n")
    problem = json.loads(as_json.stdout)
    assert (problem["code"], problem["status"], problem["title"]) == ("input_shape_required", 422, "The audit failed")
    assert problem["detail"].endswith("pass input_shapes={'x': [...]}")  # the service's own words, unchanged
    assert json.loads(unknown.stdout)["code"] == "audit_not_found" and not (tmp_path / "r.html").exists()


def test_a_url_without_a_scheme_is_http_and_another_scheme_is_refused(service, network):
    address, _ = service
    accepted = gradaudit("submit", str(network), "--url", address)
    refused = gradaudit("submit", str(network), "--url", "ftp://example.com")

    assert accepted.exit_code == 0 and accepted.stdout.startswith("queued audit ")
    assert refused.exit_code == 2
    assert "Invalid value for --url: 'ftp://example.com' is not a gradaudit service URL: give http://HOST:PORT" \
           in refused.stderr


def test_submit_json_prints_the_problem_when_the_service_refuses(service, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    result = gradaudit("submit", str(junk), "--url", service[0], "--json")

    assert result.exit_code == 2
    problem = json.loads(result.stdout)
    assert (problem["code"], problem["status"]) == ("unsupported_format", 415)
    assert result.stderr.startswith("error [unsupported_format]: ")


def test_an_unreachable_service_is_a_problem_too():
    result = gradaudit("show", "x", "--url", "127.0.0.1:1", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["code"] == "service_unreachable"


def test_submit_wait_off_a_terminal_writes_one_line_per_change_and_no_carriage_return(service, network, monkeypatch):
    address, app = service
    upload = Client.submit

    def submit_then_run(self, *arguments):
        audit = upload(self, *arguments)

        def worker():
            time.sleep(0.8)
            running(app, audit["id"], "loading", 0.0)
            time.sleep(1.2)
            for phase, value in (("probing", 0.15), ("probing", 0.3), ("probing", 0.45)):
                _record(app, audit["id"], phase, value)
                time.sleep(0.4)
            succeed(app, audit["id"])

        threading.Thread(target=worker, daemon=True).start()
        return audit

    monkeypatch.setattr(Client, "submit", submit_then_run)
    monkeypatch.setattr(Client, "__init__", _quick_polls(Client.__init__))
    result = gradaudit("submit", str(network), "--url", address, "--wait")

    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    lines = [line.split(maxsplit=1)[1] for line in result.stderr.splitlines()]
    # The claim and the first phase are two writes, as in the worker: a poll may land between them ("running").
    in_order = ["queued", "running", "running: loading (0%)", "running: probing (15%)", "succeeded"]
    assert lines == [line for line in in_order if line in lines]  # each change once, in order
    assert {"queued", "running: loading (0%)", "running: probing (15%)", "succeeded"} <= set(lines)


def _record(app, audit_id: str, phase: str, progress: float) -> None:
    with app.extensions["gradaudit"].sessions() as db_session:
        audit_rows.record_progress(db_session=db_session, audit_id=audit_id, worker_id="worker-1", phase=phase,
                                   progress=progress)


def _quick_polls(init):
    def quick(self, *arguments, **options):
        init(self, *arguments, **{**options, "poll_interval_s": 0.1})
    return quick
