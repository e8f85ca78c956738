"""Two versions of a network on a live `gradaudit serve` with API keys on: the accepted version's audit becomes the
baseline the way docs/ci.md says, then the service workflow of docs/ci.md runs on a version whose ReLUs became
sigmoids. Its verdict alone passes the doc's `--fail-on critical`; the regression against the baseline fails it.
`gradaudit compare` then shows the same comparison, both ways round."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests

from tests.support.ci_doc import github_workflow, run_workflow, write_export_script
from tests.support.keyed_serve import environment, serving_with_a_key

pytestmark = pytest.mark.integration

ACCEPTED = {"depth": 4, "activation": "ReLU"}  # healthy
PROPOSED = {"depth": 4, "activation": "Sigmoid"}  # the gradient vanishes: a warning


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`gradaudit serve` with keys on; (URL, the secret of a key)."""
    with serving_with_a_key(tmp_path_factory.mktemp("ci_service"), "ci") as (url, secret):
        yield url, secret


def gradaudit(*arguments: str, cwd: Path, key: str) -> subprocess.CompletedProcess:
    """The gradaudit command, as a runner with the key in GRADAUDIT_API_KEY runs it."""
    return subprocess.run([str(Path(sys.executable).parent / "gradaudit"), *arguments], cwd=cwd,
                          env=environment(GRADAUDIT_API_KEY=key), capture_output=True, text=True, timeout=600)


def export(checkout: Path, version: dict) -> None:
    """The checkout's export step, run."""
    write_export_script(checkout, **version)
    subprocess.run([sys.executable, "export_network.py"], cwd=checkout, check=True, capture_output=True, timeout=300)


def test_a_version_that_got_worse_fails_the_service_workflow(service, tmp_path):
    url, key = service
    checkout = tmp_path / "checkout"
    checkout.mkdir()

    export(checkout, ACCEPTED)
    accepted = gradaudit("submit", "net.onnx", "--url", url, "--wait", "--json", cwd=checkout, key=key)
    assert accepted.returncode == 0, accepted.stderr
    baseline = json.loads(accepted.stdout)["id"]  # docs/ci.md: the id of the accepted version's report

    write_export_script(checkout, **PROPOSED)
    workflow = github_workflow("github-actions-service",
                               values={"GRADAUDIT_URL": url, "GRADAUDIT_BASELINE": baseline, "GRADAUDIT_API_KEY": key})
    codes = run_workflow(workflow, checkout, {"GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md")})

    assert codes == [0, 1, 0]  # export, submit (the regression gate), job summary
    cases = {case.get("name"): case for case in ElementTree.parse(checkout / "gradaudit.xml").getroot().iter("testcase")}
    assert [name for name, case in cases.items() if case.find("failure") is not None] == ["regression"]
    assert cases["vanishing_gradient"].findtext("system-out").startswith("warning: ")  # below --fail-on critical
    summary = (tmp_path / "step_summary.md").read_text()
    print(summary)
    assert summary.startswith("### gradaudit: **WARNING** for `net.onnx`")
    assert f"#### Against baseline `{baseline}`: **regression**" in summary

    proposed = requests.get(f"{url}/v1/audits", headers={"Authorization": f"Bearer {key}"},
                            timeout=10).json()["items"][0]["id"]
    compared = gradaudit("compare", proposed, baseline, "--url", url, "--fail-on-regression", cwd=checkout, key=key)
    print(compared.stdout)
    assert compared.returncode == 1, compared.stderr
    assert compared.stdout.splitlines()[:2] == [f"audit {proposed} against baseline {baseline}: REGRESSION",
                                                "verdict: healthy -> warning"]
    assert "regression: new finding vanishing_gradient (warning)" in compared.stdout

    reverse = gradaudit("compare", baseline, proposed, "--url", url, "--fail-on-regression", "--json",
                        cwd=checkout, key=key)
    assert reverse.returncode == 0, reverse.stderr
    document = json.loads(reverse.stdout)
    assert document["regression"] is False and [f["code"] for f in document["findings"]["removed"]] == \
        ["vanishing_gradient"]
    matched = [layer["name"] for layer in document["layers"]["matched"]]
    assert matched == ["/0/Gemm", "/2/Gemm", "/4/Gemm", "/6/Gemm", "/8/Gemm"]  # the Linear layers, by name
    assert document["layers"]["only_in_audit"] == ["/1/Relu", "/3/Relu", "/5/Relu", "/7/Relu"]
    assert document["layers"]["matched"][0]["output_grad_norm"]["decades"] > 0  # ReLU passes more gradient back
