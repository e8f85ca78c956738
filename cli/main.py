"""The `gradaudit` console script: serve, worker, migrate, audit, submit."""

from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from cli import ci
from cli.keys import keys, serve_auth
from gradaudit.errors import one_line
from gradaudit.options import AuditOptions
from gradaudit.report import render_text
from gradaudit.settings import load_settings

SEVERITY_RANK = {"healthy": 0, "warning": 1, "critical": 2}
EXIT_GATE_FAILED, EXIT_ERROR = 1, 2


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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--data-dir", type=click.Path(path_type=Path), help="default: ./gradaudit-data")
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


def _parse_shapes(values: tuple[str, ...]) -> dict[str, list[int]]:
    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            shapes[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            name = ""
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=1x3x32x32", param_hint="--input-shape")
    return shapes


def _options(input_shape, batch_size, seed, loss, verify=None) -> AuditOptions:
    fields = {"input_shapes": _parse_shapes(input_shape), "batch_size": batch_size, "seed": seed, "loss": loss,
              "verify_remedies": verify}
    try:
        return AuditOptions(**{key: value for key, value in fields.items() if value is not None})
    except ValidationError as invalid:
        raise click.BadParameter(str(invalid)) from None


def _gate(verdict: str, fail_on: str | None) -> int:
    if fail_on and SEVERITY_RANK[verdict] >= SEVERITY_RANK[fail_on]:
        return EXIT_GATE_FAILED
    return 0


def _print_report(report: dict, as_json: bool) -> None:
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


def _fail(code: str, detail: str) -> None:
    click.echo(f"error [{code}]: {detail}", err=True)
    sys.exit(EXIT_ERROR)


def coded_failures(command):
    """Every failure an auditing command meets exits 2 with a coded error, never a traceback: a pipeline reads
    exit 1 as a failing verdict."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except Exception as exc:
            _fail("internal_error", one_line(exc))

    return run


_probe_options = [
    click.option("--input-shape", multiple=True, help="NAME=1x3x32x32; repeat for several inputs"),
    click.option("--batch-size", type=int),
    click.option("--seed", type=int),
    click.option("--loss", type=click.Choice(["auto", "sum", "mse", "cross_entropy"])),
    click.option("--verify/--no-verify", default=None,
                 help="apply every recommendation to a copy of the network and re-probe it (default: on)"),
    click.option("--fail-on", type=click.Choice(["warning", "critical"]),
                 help="exit 1 when the verdict is at least this severe"),
    click.option("--json", "as_json", is_flag=True, help="print the report as JSON"),
]


def probe_options(command):
    """Attach the options shared by `audit` and `submit`."""
    for option in reversed(_probe_options):
        command = option(command)
    return command


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=".npz batch")
@click.option("--write-fixes", type=click.Path(file_okay=False, path_type=Path),
              help="write each verified fix's patched network (and the combined one) into this folder as .onnx")
@probe_options
@ci.output_options
@coded_failures
def audit(path, inputs, write_fixes, input_shape, batch_size, seed, loss, verify, fail_on, as_json, junit,
          markdown) -> None:
    """Audit a network file here, without a server, and print the report."""
    from cli.local import audit_file

    options = _options(input_shape, batch_size, seed, loss, verify)
    report, error = audit_file(path, options=options, inputs_path=inputs, settings=_settings(),
                               write_fixes=write_fixes)
    if error:
        ci.write_error_outputs(*error, source=path, junit=junit, markdown=markdown)
        _fail(*error)
    _print_report(report, as_json)
    ci.write_outputs(report, source=path, junit=junit, markdown=markdown, fail_on=fail_on)
    sys.exit(_gate(report["verdict"], fail_on))


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
@click.option("--api-key", envvar="GRADAUDIT_API_KEY", show_envvar=True,
              help="sent as Authorization: Bearer (gradaudit keys create)")
@click.option("--inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=".npz batch")
@click.option("--wait/--no-wait", default=False, help="wait for the report")
@click.option("--timeout", default=1800, show_default=True, type=float, help="seconds to wait")
@probe_options
@ci.output_options
@ci.baseline_options
@coded_failures
def submit(path, url, api_key, inputs, wait, timeout, input_shape, batch_size, seed, loss, verify, fail_on,
           as_json, junit, markdown, baseline, fail_on_regression) -> None:
    """Upload a network to a gradaudit service; with --wait, gate on its verdict (and with --baseline, on what
    changed since that audit)."""
    from cli.client import Client, ServiceError

    ci.require_baseline(baseline, fail_on_regression)
    client = Client(url, api_key=api_key)
    options = _options(input_shape, batch_size, seed, loss, verify)
    try:
        ci.check_baseline(client, baseline)
        audit_doc = client.submit(path, options=options.model_dump(exclude_unset=True), inputs_path=inputs)
        if not wait and not (fail_on or junit or markdown or baseline):
            click.echo(json.dumps(audit_doc, indent=2) if as_json else f"queued audit {audit_doc['id']}")
            return
        report = client.wait_for_report(audit_doc["id"], timeout_s=timeout, progress=_progress)
        comparison = ci.compare_with_baseline(client, audit_doc["id"], baseline)
    except ServiceError as error:
        ci.write_error_outputs(error.code, error.detail, source=path, junit=junit, markdown=markdown)
        _fail(error.code, error.detail)
    _print_report(report, as_json)
    ci.print_comparison(comparison, beside_json=as_json)
    ci.write_outputs(report, source=path, junit=junit, markdown=markdown, fail_on=fail_on, comparison=comparison)
    sys.exit(max(_gate(report["verdict"], fail_on), ci.regression_gate(comparison, fail_on_regression)))


@main.command()
@click.argument("audit_id")
@click.argument("baseline_id")
@click.option("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
@click.option("--api-key", envvar="GRADAUDIT_API_KEY", show_envvar=True,
              help="sent as Authorization: Bearer (gradaudit keys create)")
@click.option("--fail-on-regression", is_flag=True,
              help="exit 1 when AUDIT_ID regressed against BASELINE_ID: a worse verdict, a new warning or "
                   "critical finding, or a finding whose severity rose")
@click.option("--json", "as_json", is_flag=True, help="print the comparison as JSON")
@coded_failures
def compare(audit_id, baseline_id, url, api_key, fail_on_regression, as_json) -> None:
    """Compare audit AUDIT_ID with the earlier audit BASELINE_ID on the service: findings added, removed or
    changed in severity, per-layer metric changes matched by layer name, and whether it regressed."""
    from cli.client import Client, ServiceError

    try:
        comparison = Client(url, api_key=api_key).compare(audit_id, baseline_id)
    except ServiceError as error:
        _fail(error.code, error.detail)
    ci.print_comparison_document(comparison, as_json)
    sys.exit(ci.regression_gate(comparison, fail_on_regression))


def _progress(status: str, elapsed_s: float) -> None:
    click.echo(f"\r{status:<10} {elapsed_s:6.1f}s", err=True, nl=status in ("succeeded", "failed"))


main.add_command(keys)

if __name__ == "__main__":
    main()
