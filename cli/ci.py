"""What the CLI adds for pipelines: --junit FILE and --markdown FILE on `audit` and `submit`
(gradaudit/ci_outputs.py renders them), and the comparison with a baseline audit on the service
(`submit --baseline ID --fail-on-regression`, `gradaudit compare`; gradaudit/compare.py decides what a regression
is). Exit codes stay cli/failures.py's: 0 pass, 1 a gate failed, 2 an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.failures import EXIT_ERROR, EXIT_GATE_FAILED
from gradaudit.ci_outputs import render_junit, render_junit_error, render_markdown, render_markdown_error
from gradaudit.client import Client, ServiceError
from gradaudit.compare import render_comparison

_output_options = [
    click.option("--junit", type=click.Path(dir_okay=False, path_type=Path),
                 help="write a JUnit XML report: one testcase per finding code, failing at the --fail-on severity "
                      "(warning if not given) with the finding's title, evidence and first fix"),
    click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path),
                 help="write a Markdown summary (a pull-request comment): the verdict and a table of the findings"),
]
_baseline_options = [
    click.option("--baseline", metavar="AUDIT_ID",
                 help="compare the report with this earlier audit on the service (an earlier version of the "
                      "network) and print what changed; waits for the report"),
    click.option("--fail-on-regression", is_flag=True,
                 help="exit 1 when the audit regressed against --baseline: a worse verdict, a new warning or "
                      "critical finding, or a finding whose severity rose"),
]


class OutputNotWritten(click.FileError):
    """A --junit or --markdown file that cannot be written: an error (exit 2), never the gate's exit 1."""

    exit_code = EXIT_ERROR


def output_options(command):
    """Attach --junit and --markdown."""
    for option in reversed(_output_options):
        command = option(command)
    return command


def baseline_options(command):
    """Attach --baseline and --fail-on-regression."""
    for option in reversed(_baseline_options):
        command = option(command)
    return command


def write_outputs(report: dict[str, Any], *, source: Path, junit: Path | None, markdown: Path | None,
                  fail_on: str | None, comparison: dict[str, Any] | None = None) -> None:
    """Write the JUnit and Markdown files asked for."""
    if junit:
        _write(junit, render_junit(report, source=str(source), fail_on=fail_on, comparison=comparison))
    if markdown:
        _write(markdown, render_markdown(report, source=str(source), comparison=comparison))


def write_error_outputs(code: str, detail: str, *, source: Path, junit: Path | None, markdown: Path | None) -> None:
    """Write the JUnit and Markdown files of an audit that could not run, so the pipeline shows why."""
    if junit:
        _write(junit, render_junit_error(code, detail, source=str(source)))
    if markdown:
        _write(markdown, render_markdown_error(code, detail, source=str(source)))


def check_baseline(client: Client, baseline: str | None) -> None:
    """Before uploading anything: the baseline is an audit this key sees, and it did not fail."""
    if baseline is None:
        return
    try:
        audit = client.get(baseline)
    except ServiceError as error:
        raise ServiceError(error.code, f"baseline {baseline}: {error.detail}") from None
    if audit.get("error"):
        raise ServiceError(audit["error"]["code"], f"baseline {baseline} failed: {audit['error'].get('detail')}")


def compare_with_baseline(client: Client, audit_id: str, baseline: str | None) -> dict[str, Any] | None:
    """The service's comparison of the audit with its baseline; None without a baseline."""
    if baseline is None:
        return None
    try:
        return client.compare(audit_id, baseline)
    except ServiceError as error:
        raise ServiceError(error.code, f"comparing with baseline {baseline}: {error.detail}") from None


def print_comparison(comparison: dict[str, Any] | None, *, beside_json: bool) -> None:
    """The comparison's text; on stderr where stdout carries the report as JSON."""
    if comparison is not None:
        click.echo("\n" + render_comparison(comparison), err=beside_json)


def print_comparison_document(comparison: dict[str, Any], as_json: bool) -> None:
    """`gradaudit compare`'s output: the comparison as JSON, or as text."""
    click.echo(json.dumps(comparison, indent=2) if as_json else render_comparison(comparison))


def regression_gate(comparison: dict[str, Any] | None, fail_on_regression: bool) -> int:
    """1 where a regression was asked to fail the run and there is one, else 0."""
    return EXIT_GATE_FAILED if fail_on_regression and comparison and comparison["regression"] else 0


def require_baseline(baseline: str | None, fail_on_regression: bool) -> None:
    """--fail-on-regression means nothing without a baseline: a usage error (exit 2), not a silent pass."""
    if fail_on_regression and baseline is None:
        raise click.UsageError("--fail-on-regression needs --baseline AUDIT_ID")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise OutputNotWritten(str(path), hint=error.strerror or type(error).__name__) from None
