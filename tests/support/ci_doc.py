"""The workflows of docs/ci.md, read and run as GitHub Actions and GitLab CI would run their shell commands.

Each workflow is a ```yaml block right after a `<!-- ci-test: NAME -->` line. Its install step is left out
explicitly (a GitHub step named "Install gradaudit", a GitLab job's before_script), since the tests run where
gradaudit is installed already; every other shell command runs, in order, under bash -eo pipefail, as both
systems do. A GitHub step runs only while every earlier one passed, unless its condition is `always()`; a GitLab
job's script stops at its first failing line. Action steps (`uses:`) and artifacts are the CI systems' own and do
not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
MARKED_BLOCK = re.compile(r"^<!-- ci-test: ([a-z-]+) -->\n```yaml\n(.*?)^```$", re.S | re.M)
INSTALL_STEP = "Install gradaudit"
# A GitHub expression standing for a whole env value: the test supplies those values itself.
EXPRESSION = re.compile(r"^\$\{\{\s*(vars|secrets)\.([A-Z_]+)\s*\}\}$")


# The user's own export step, as the workflows call it (python export_network.py): a width-16 MLP of `depth` hidden
# layers, each followed by the activation (a torch.nn class name), written to net.onnx.
EXPORT_NETWORK = """
import torch
from torch import nn

torch.manual_seed(0)
layers = []
for _ in range({depth}):
    layers += [nn.Linear(16, 16), nn.{activation}()]
network = nn.Sequential(*layers, nn.Linear(16, 4)).eval()
torch.onnx.export(network, (torch.randn(8, 16),), "net.onnx", dynamo=False, input_names=["x"])
"""


def write_export_script(checkout: Path, *, depth: int, activation: str) -> None:
    """The checkout's export_network.py, for this version of the network."""
    (checkout / "export_network.py").write_text(EXPORT_NETWORK.format(depth=depth, activation=activation))


@dataclass
class Step:
    """One shell command of a workflow, with what decides whether it runs."""

    name: str
    script: str
    always: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Workflow:
    """A workflow's shell steps, and the install commands left out."""

    steps: list[Step]
    install: list[str]
    env: dict[str, str]
    stop_at_first_failure: bool  # GitLab: one failing line ends the script, `always` or not


def marked_blocks(text: str | None = None) -> dict[str, str]:
    """Every marked ```yaml block of docs/ci.md, by its name."""
    return dict(MARKED_BLOCK.findall(text if text is not None else DOC.read_text(encoding="utf-8")))


def github_workflow(name: str, values: dict[str, str] | None = None) -> Workflow:
    """The single job of a marked GitHub Actions workflow; `${{ vars.X }}` and `${{ secrets.X }}` env values are
    taken from values (one missing is an error: the test must say what it stands for)."""
    [job] = yaml.safe_load(marked_blocks()[name])["jobs"].values()
    steps, install = [], []
    for step in job["steps"]:
        if "run" not in step:
            continue
        if step.get("name") == INSTALL_STEP:
            install.append(step["run"])
            continue
        condition = step.get("if")
        assert condition in (None, "always()"), f"a shell step's condition the test cannot judge: {condition}"
        env = {key: _value(value, values or {}) for key, value in step.get("env", {}).items()}
        steps.append(Step(step["name"], step["run"], always=condition == "always()", env=env))
    return Workflow(steps, install, dict(job.get("env", {})), stop_at_first_failure=False)


def gitlab_job(name: str, job_name: str) -> Workflow:
    """A marked GitLab CI job: its script lines, its before_script as the install."""
    job = yaml.safe_load(marked_blocks()[name])[job_name]
    steps = [Step(line, line) for line in job["script"]]
    return Workflow(steps, list(job.get("before_script", [])), dict(job.get("variables", {})),
                    stop_at_first_failure=True)


def run_workflow(workflow: Workflow, cwd: Path, env: dict[str, str] | None = None) -> list[int | None]:
    """Run the workflow's steps in cwd with the installed gradaudit and python first on PATH; each step's exit
    code, None for a step that did not run. A failed step's output is printed for the test's log."""
    base = {**os.environ, **workflow.env, **(env or {}),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    codes: list[int | None] = []
    failed = False
    for step in workflow.steps:
        if failed and (workflow.stop_at_first_failure or not step.always):
            codes.append(None)
            continue
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", step.script], cwd=cwd, env={**base, **step.env},
                              capture_output=True, text=True, timeout=600)
        if done.returncode:
            print(f"step {step.name!r} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        codes.append(done.returncode)
        failed = failed or done.returncode != 0
    return codes


def _value(value: str, values: dict[str, str]) -> str:
    expression = EXPRESSION.match(str(value))
    if not expression:
        return str(value)
    assert expression.group(2) in values, f"the test gives no value for {value}"
    return values[expression.group(2)]
