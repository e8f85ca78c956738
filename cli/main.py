"""The `gradaudit` console script: serve, worker, migrate, keys, audit, submit, show, compare."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from cli import ci
from cli.failures import EXIT_GATE_FAILED, coded_failures, fail
from cli.keys import keys, serve_auth
from cli.options import audit_options, probe_options
from cli.progress import LocalPhases, WaitDisplay
from cli.remote import service_options, show
from gradaudit.report import render_text
from gradaudit.settings import load_settings

SEVERITY_RANK = {"healthy": 0, "warning": 1, "critical": 2}


@click.group()
def main() -> None:
    """gradaudit: audits the gradients of ONNX, TorchScript and torch.export (.pt2) networks."""


def _settings(**overrides):
    try:
        return load_settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as invalid:
        raise click.UsageError(f"invalid configuration: {invalid}") from None


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT both stop `serve` cleanly, even where a shell started it with SIGINT ignored."""

    def _interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="the address to listen on; anything but loopback requires API keys")
@click.option("--port", default=8000, show_default=True, type=int, help="the port to listen on")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="where the SQLite file, the artifacts and the embedded Redis live (default: ./gradaudit-data)")
def serve(host: str, port: int, data_dir: Path | None) -> None:
    """Run the whole service: API, worker and (unless configured) SQLite and an embedded Redis."""
    from cli.embedded import serve as serve_embedded

    settings, auth_line = serve_auth(_settings(data_dir=data_dir), host)
    click.echo(auth_line)
    _stop_on_signals()
    serve_embedded(settings, host, port, announce=lambda url: click.echo(f"gradaudit listening on {url}"))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker; extra arguments go to Celery."""
    from worker.app import run_worker

    settings = _settings()
    if not settings.broker_url:
        raise click.UsageError("CELERY_BROKER_URL is not set")
    run_worker(settings, list(ctx.args))


@main.command()
def migrate() -> None:
    """Upgrade the database (DATABASE_URL, else the SQLite file in the data dir) to the newest schema."""
    from models.migrate import upgrade_database

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.sqlalchemy_url)
    click.echo("database is up to date")


def _gate(verdict: str, fail_on: str | None) -> int:
    if fail_on and SEVERITY_RANK[verdict] >= SEVERITY_RANK[fail_on]:
        return EXIT_GATE_FAILED
    return 0


def _print_report(report: dict, as_json: bool) -> None:
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="an .npz of the network's inputs (arrays named after them), probed as the one batch instead of "
                   "synthetic ones")
@click.option("--write-fixes", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="write each verified fix's patched network (and the combined one) into this folder as .onnx")
@probe_options
@ci.output_options
@coded_failures
def audit(path, inputs, write_fixes, fail_on, as_json, junit, markdown, **given) -> None:
    """Audit a network file here, without a server, and print the report."""
    from cli.local import audit_file

    options = audit_options(**given)
    phases = LocalPhases(sys.stderr) if sys.stderr.isatty() else None  # a terminal sees the phases; a log stays quiet
    report, error = audit_file(path, options=options, inputs_path=inputs, settings=_settings(),
                               write_fixes=write_fixes, on_progress=phases)
    if phases is not None:
        phases.close()
    if error:
        ci.write_error_outputs(*error, source=path, junit=junit, markdown=markdown)
        fail(*error, as_json=as_json)
    _print_report(report, as_json)
    ci.write_outputs(report, source=path, junit=junit, markdown=markdown, fail_on=fail_on)
    sys.exit(_gate(report["verdict"], fail_on))


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@service_options
@click.option("--inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="an .npz of the network's inputs (arrays named after them), probed as the one batch instead of "
                   "synthetic ones")
@click.option("--wait/--no-wait", default=False,
              help="wait for the report (implied by --fail-on, --junit, --markdown and --baseline); stderr shows "
                   "the audit's phase: a progress bar on a terminal, else one line per change")
@click.option("--timeout", default=1800, show_default=True, type=float, metavar="SECONDS",
              help="how long to wait before giving up (wait_timeout, exit 2)")
@click.option("--webhook-url", metavar="URL",
              help="have the service POST the audit's summary, signed, to this URL when it finishes")
@probe_options
@ci.output_options
@ci.baseline_options
@coded_failures
def submit(path, client, inputs, wait, timeout, fail_on, as_json, junit, markdown, baseline, fail_on_regression,
           **given) -> None:
    """Upload a network to a gradaudit service; with --wait, gate on its verdict (and with --baseline, on what
    changed since that audit)."""
    from gradaudit.client import ServiceError

    ci.require_baseline(baseline, fail_on_regression)
    options = audit_options(**given)
    try:
        ci.check_baseline(client, baseline)
        audit_doc = client.submit(path, options.model_dump(exclude_unset=True), inputs)
        if not wait and not (fail_on or junit or markdown or baseline):
            click.echo(json.dumps(audit_doc, indent=2) if as_json else f"queued audit {audit_doc['id']}")
            return
        client.wait(audit_doc["id"], timeout=timeout, on_poll=WaitDisplay(sys.stderr, on_terminal=sys.stderr.isatty()))
        report = client.report(audit_doc["id"])
        comparison = ci.compare_with_baseline(client, audit_doc["id"], baseline)
    except ServiceError as error:
        ci.write_error_outputs(error.code, error.detail, source=path, junit=junit, markdown=markdown)
        fail(error.code, error.detail, as_json=as_json, problem=error.problem)
    _print_report(report, as_json)
    ci.print_comparison(comparison, beside_json=as_json)
    ci.write_outputs(report, source=path, junit=junit, markdown=markdown, fail_on=fail_on, comparison=comparison)
    sys.exit(max(_gate(report["verdict"], fail_on), ci.regression_gate(comparison, fail_on_regression)))


@main.command()
@click.argument("audit_id")
@click.argument("baseline_id")
@service_options
@click.option("--fail-on-regression", is_flag=True,
              help="exit 1 when AUDIT_ID regressed against BASELINE_ID: a worse verdict, a new warning or "
                   "critical finding, or a finding whose severity rose")
@click.option("--json", "as_json", is_flag=True, help="print the comparison as JSON")
@coded_failures
def compare(audit_id, baseline_id, client, fail_on_regression, as_json) -> None:
    """Compare audit AUDIT_ID with the earlier audit BASELINE_ID on the service: findings added, removed or
    changed in severity, per-layer metric changes matched by layer name, and whether it regressed."""
    from gradaudit.client import ServiceError

    try:
        comparison = client.compare(audit_id, baseline_id)
    except ServiceError as error:
        fail(error.code, error.detail, as_json=as_json, problem=error.problem)
    ci.print_comparison_document(comparison, as_json)
    sys.exit(ci.regression_gate(comparison, fail_on_regression))


main.add_command(keys)
main.add_command(show)

if __name__ == "__main__":
    main()
