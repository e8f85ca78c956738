"""cli/ci.py through the `gradaudit` command: compare, submit --baseline --fail-on-regression, --junit and
--markdown, against a real app served over HTTP on a local port (the worker's part played by storing each
audit's result right after its upload)."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from api import create_app
from cli.main import main
from gradaudit.client import Client
from models import audits as audit_rows
from tests.support.api_rows import SHA256, store_result
from tests.support.reports import NETWORK, RELU_LAYERS, SETUP, SIGMOID_LAYERS, finding
from tests.support.threaded_app import serving

VANISHING = finding("vanishing_gradient", "critical", layers=("/0/Gemm",), title="Vanishing gradients")


@pytest.fixture
def service(make_settings, sqlite_url):
    """The app on an ephemeral port; yields (base URL, app)."""
    app = create_app(make_settings(database_url=sqlite_url))
    with serving(app) as url:
        yield url, app


def succeed(app, audit_id: str, layers: list[dict], findings: list[dict]) -> None:
    """Store a result for a queued audit, as the worker does."""
    verdict = "critical" if findings else "healthy"
    store_result(app.extensions["gradaudit"], audit_id,
                 {"network": NETWORK, "setup": SETUP, "findings": findings, "verdict": verdict}, layers)


def finished(app, layers: list[dict], findings: list[dict] = ()) -> str:
    """A succeeded audit's id."""
    with app.extensions["gradaudit"].sessions() as db_session:
        audit_id = audit_rows.create_audit(db_session=db_session, artifact_sha256=SHA256, artifact_format="onnx",
                                           artifact_size=4, filename="net.onnx", options={}).id
    succeed(app, audit_id, layers, list(findings))
    return audit_id


@pytest.fixture
def network(tmp_path):
    """A minimal ONNX ModelProto on disk (the service only sniffs it here)."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"\x08\x07:\x00")
    return path


@pytest.fixture
def audited_as(monkeypatch, service):
    """Make every upload come out with these layers and findings, stored right after the POST."""
    _, app = service
    upload = Client.submit

    def set_result(layers: list[dict], findings: list[dict] = ()) -> list[str]:
        submitted = []

        def submit_and_audit(self, *arguments, **options):
            queued = upload(self, *arguments, **options)
            succeed(app, queued["id"], layers, list(findings))
            submitted.append(queued["id"])
            return queued

        monkeypatch.setattr(Client, "submit", submit_and_audit)
        return submitted

    return set_result


def gradaudit(*arguments: str):
    """Run the command as a user would; the result."""
    return CliRunner().invoke(main, list(arguments))


def test_compare_prints_what_changed(service):
    url, app = service
    relu, sigmoid = finished(app, RELU_LAYERS), finished(app, SIGMOID_LAYERS, [VANISHING])

    result = gradaudit("compare", sigmoid, relu, "--url", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"audit {sigmoid} against baseline {relu}: REGRESSION"
    assert "  + [critical] vanishing_gradient: Vanishing gradients" in lines
    assert "layers: 2 matched, 1 (/1/Sigmoid) only in the audit, 1 (/1/Relu) only in the baseline" in lines


@pytest.mark.parametrize(("regressed", "code"), [(True, 1), (False, 0)])
def test_compare_fails_on_a_regression_when_asked(service, regressed, code):
    url, app = service
    relu, sigmoid = finished(app, RELU_LAYERS), finished(app, SIGMOID_LAYERS, [VANISHING])
    audit, baseline = (sigmoid, relu) if regressed else (relu, sigmoid)

    result = gradaudit("compare", audit, baseline, "--url", url, "--fail-on-regression", "--json")

    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["regression"] is regressed


def test_compare_with_an_unknown_audit_is_an_error(service):
    url, app = service
    result = gradaudit("compare", finished(app, RELU_LAYERS), "nope", "--url", url, "--fail-on-regression")
    assert result.exit_code == 2
    assert "error [audit_not_found]: there is no audit with id 'nope'" in result.output


def test_submit_against_a_baseline_fails_on_the_regression(service, audited_as, network, tmp_path):
    url, app = service
    baseline = finished(app, RELU_LAYERS)
    submitted = audited_as(SIGMOID_LAYERS, [VANISHING])
    junit, markdown = tmp_path / "out" / "gradaudit.xml", tmp_path / "out" / "gradaudit.md"

    result = gradaudit("submit", str(network), "--url", url, "--baseline", baseline, "--fail-on-regression",
                       "--junit", str(junit), "--markdown", str(markdown))

    assert result.exit_code == 1, result.output
    assert f"audit {submitted[0]} against baseline {baseline}: REGRESSION" in result.stdout
    assert "regression: the verdict got worse: healthy -> critical" in result.stdout
    suite = ElementTree.parse(junit).getroot()[0]
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["vanishing_gradient", "regression"]
    assert f"#### Against baseline `{baseline}`: **regression**" in markdown.read_text()


def test_submit_against_a_baseline_passes_without_a_regression(service, audited_as, network):
    url, app = service
    baseline = finished(app, SIGMOID_LAYERS, [VANISHING])
    audited_as(RELU_LAYERS)

    result = gradaudit("submit", str(network), "--url", url, "--baseline", baseline, "--fail-on-regression",
                       "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "healthy"  # stdout stays the report; the comparison on stderr
    assert "against baseline" in result.stderr and "no regression" in result.stderr


def test_the_verdict_gate_still_holds_beside_the_baseline(service, audited_as, network):
    url, app = service
    baseline = finished(app, SIGMOID_LAYERS, [VANISHING])
    audited_as(SIGMOID_LAYERS, [VANISHING])  # no regression, but critical

    result = gradaudit("submit", str(network), "--url", url, "--baseline", baseline, "--fail-on-regression",
                       "--fail-on", "critical")
    assert result.exit_code == 1 and "no regression" in result.stdout


def test_an_unknown_baseline_is_an_error_before_anything_is_uploaded(service, network, tmp_path):
    url, app = service
    junit = tmp_path / "gradaudit.xml"

    result = gradaudit("submit", str(network), "--url", url, "--baseline", "nope", "--junit", str(junit))

    assert result.exit_code == 2
    assert "error [audit_not_found]: baseline nope: there is no audit with id 'nope'" in result.output
    with app.extensions["gradaudit"].sessions() as db_session:
        assert audit_rows.list_audits(db_session=db_session, limit=10, offset=0)[1] == 0
    [case] = ElementTree.parse(junit).getroot().iter("testcase")
    assert case.find("error").get("type") == "audit_not_found"


def test_a_failed_baseline_is_an_error(service, network):
    url, app = service
    with app.extensions["gradaudit"].sessions() as db_session:
        failed = audit_rows.create_audit(db_session=db_session, artifact_sha256=SHA256, artifact_format="torchscript",
                                         artifact_size=4, options={}).id
        audit_rows.fail_audit(db_session=db_session, audit_id=failed, code="input_shape_required", detail="shapes")

    result = gradaudit("submit", str(network), "--url", url, "--baseline", failed)
    assert result.exit_code == 2
    assert f"error [input_shape_required]: baseline {failed} failed: shapes" in result.output


def test_fail_on_regression_needs_a_baseline(network):
    result = gradaudit("submit", str(network), "--url", "http://127.0.0.1:9", "--fail-on-regression")
    assert result.exit_code == 2 and "--fail-on-regression needs --baseline AUDIT_ID" in result.output


def test_submit_writes_the_outputs_without_wait(service, audited_as, network, tmp_path):
    url, _ = service
    audited_as(SIGMOID_LAYERS, [VANISHING])
    markdown = tmp_path / "summary.md"

    result = gradaudit("submit", str(network), "--url", url, "--markdown", str(markdown))

    assert result.exit_code == 0, result.output  # no gate asked for
    assert markdown.read_text().startswith("### gradaudit: **CRITICAL** for `")


def test_a_failed_audit_writes_its_error_to_the_outputs(service, monkeypatch, network, tmp_path):
    url, app = service
    upload = Client.submit

    def submit_and_fail(self, *arguments, **options):
        queued = upload(self, *arguments, **options)
        with app.extensions["gradaudit"].sessions() as db_session:
            audit_rows.fail_audit(db_session=db_session, audit_id=queued["id"], code="invalid_onnx", detail="bad")
        return queued

    monkeypatch.setattr(Client, "submit", submit_and_fail)
    junit, markdown = tmp_path / "gradaudit.xml", tmp_path / "gradaudit.md"
    result = gradaudit("submit", str(network), "--url", url, "--junit", str(junit), "--markdown", str(markdown))

    assert result.exit_code == 2 and "error [invalid_onnx]: bad" in result.output
    assert ElementTree.parse(junit).getroot().get("errors") == "1"
    assert markdown.read_text() == f"### gradaudit: **ERROR** for `{network}`\n\n`invalid_onnx`: bad\n"


def test_an_output_that_cannot_be_written_is_an_error_not_a_gate(tmp_path):
    network = tmp_path / "net.bin"
    network.write_bytes(b"not a network")
    blocked = tmp_path / "file"
    blocked.write_text("")

    result = gradaudit("audit", str(network), "--junit", str(blocked / "gradaudit.xml"))

    assert result.exit_code == 2
    assert "Could not open file" in result.output and "Traceback" not in result.output
