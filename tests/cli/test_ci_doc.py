"""docs/ci.md's GitHub Actions workflow and GitLab CI job, run as those systems run their shell commands
(tests/support/ci_doc.py) on a network the test's own export_network.py writes: the exit codes, and the JUnit,
Markdown and job-summary files they leave."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from tests.support.ci_doc import DOC, gitlab_job, github_workflow, marked_blocks, run_workflow, write_export_script

pytestmark = pytest.mark.slow  # each run audits a network in the sandbox: seconds

HEALTHY = {"depth": 2, "activation": "ReLU"}
CRITICAL = {"depth": 8, "activation": "Sigmoid"}  # gradients vanish through the sigmoids


def project(tmp_path, network: dict) -> dict:
    """A checkout with its export script; the environment a CI runner gives the job."""
    write_export_script(tmp_path, **network)
    return {"GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md")}


def junit_failures(path) -> list[str]:
    """The failing testcases of a JUnit file."""
    return [case.get("name") for case in ElementTree.parse(path).getroot().iter("testcase")
            if case.find("failure") is not None]


def test_the_doc_marks_every_workflow_and_each_one_parses():
    text = DOC.read_text(encoding="utf-8")
    assert set(marked_blocks()) == {"github-actions", "gitlab-ci", "github-actions-service"}
    assert text.count("```yaml") == len(marked_blocks())  # no workflow escapes the tests


@pytest.mark.parametrize("name", ["github-actions", "github-actions-service"])
def test_only_the_install_step_is_left_out_of_a_github_workflow(name):
    workflow = github_workflow(name, values={"GRADAUDIT_URL": "u", "GRADAUDIT_BASELINE": "b",
                                             "GRADAUDIT_API_KEY": "k"})
    [install] = workflow.install
    assert install.startswith("pip install ") and "gradaudit" in install
    assert workflow.steps[0].name == "Export the network" and workflow.steps[1].script.startswith("gradaudit ")
    assert [step.always for step in workflow.steps] == [False, False, True]


def test_only_the_install_step_is_left_out_of_the_gitlab_job():
    job = gitlab_job("gitlab-ci", "gradaudit")
    [install] = job.install
    assert install.startswith("pip install ") and "gradaudit" in install
    assert [step.script.split()[0] for step in job.steps] == ["python", "gradaudit"]


def test_the_github_workflow_passes_a_healthy_network(tmp_path):
    env = project(tmp_path, HEALTHY)

    codes = run_workflow(github_workflow("github-actions"), tmp_path, env)

    assert codes == [0, 0, 0]  # export, audit, job summary
    assert junit_failures(tmp_path / "gradaudit.xml") == []
    assert len(list(ElementTree.parse(tmp_path / "gradaudit.xml").getroot().iter("testcase"))) == 9
    summary = (tmp_path / "step_summary.md").read_text()
    assert summary == (tmp_path / "gradaudit.md").read_text()
    assert summary.startswith("### gradaudit: **HEALTHY** for `net.onnx`")


def test_the_github_workflow_fails_a_critical_network_and_still_reports(tmp_path):
    env = project(tmp_path, CRITICAL)

    codes = run_workflow(github_workflow("github-actions"), tmp_path, env)

    assert codes == [0, 1, 0]  # the gate fails the audit step; the summary step runs always()
    assert junit_failures(tmp_path / "gradaudit.xml") == ["vanishing_gradient"]
    summary = (tmp_path / "step_summary.md").read_text()
    assert summary.startswith("### gradaudit: **CRITICAL** for `net.onnx`")
    assert "| critical | `vanishing_gradient` |" in summary


def test_the_gitlab_job_fails_a_critical_network_and_keeps_its_artifacts(tmp_path):
    env = project(tmp_path, CRITICAL)
    job = gitlab_job("gitlab-ci", "gradaudit")

    codes = run_workflow(job, tmp_path, env)

    assert codes == [0, 1]
    assert junit_failures(tmp_path / "gradaudit.xml") == ["vanishing_gradient"]
    assert (tmp_path / "gradaudit.md").read_text().startswith("### gradaudit: **CRITICAL**")
