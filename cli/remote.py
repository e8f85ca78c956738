"""The commands' side of talking to a service: --url and --api-key turned into a gradaudit.client.Client, and
`gradaudit show`, which reads one audit back."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from cli.ci import OutputNotWritten
from cli.failures import coded_failures, fail
from cli.progress import bar
from gradaudit.client import Client, ServiceError, service_url
from gradaudit.report import render_text

_service_options = [
    click.option("--url", required=True, metavar="URL", callback=lambda _ctx, _param, url: _checked_url(url),
                 help="the service, e.g. http://127.0.0.1:8000 (without a scheme, http:// is assumed)"),
    click.option("--api-key", envvar="GRADAUDIT_API_KEY", show_envvar=True, metavar="KEY",
                 help="sent as Authorization: Bearer (gradaudit keys create)"),
]


def _checked_url(url: str) -> str:
    try:
        return service_url(url)
    except ValueError as refused:
        raise click.BadParameter(str(refused), param_hint="--url") from None


def service_options(command):
    """Attach --url and --api-key; the command receives `client`, a Client of that service."""

    @functools.wraps(command)
    def with_client(*args, url: str, api_key: str | None, **kwargs):
        return command(*args, client=Client(url, api_key=api_key), **kwargs)

    for option in reversed(_service_options):
        with_client = option(with_client)
    return with_client


@click.command()
@click.argument("audit_id")
@service_options
@click.option("--json", "as_json", is_flag=True,
              help="print the report as JSON (an unfinished audit: its status document; a failed one: the problem "
                   "document)")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="write the report as a self-contained HTML page (charts included) to FILE")
@coded_failures
def show(audit_id: str, client: Client, as_json: bool, html: Path | None) -> None:
    """Show audit AUDIT_ID of the service: its report once it has finished, else its status and phase. Exits 2
    when the audit failed (with its code) or cannot be read."""
    try:
        audit = client.get(audit_id)
        if audit["status"] in ("queued", "running") and html is None:
            click.echo(json.dumps(audit, indent=2) if as_json else _status_line(audit))
            return
        report = client.report(audit_id)
        if html is not None:
            _write(html, client.report_html(audit_id))
    except ServiceError as error:
        fail(error.code, error.detail, as_json=as_json, problem=error.problem)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))
    if html is not None:
        click.echo(f"wrote {html}", err=True)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as refused:
        raise OutputNotWritten(str(path), hint=refused.strerror) from None


def _status_line(audit: dict) -> str:
    phase = f" ({audit['phase'].replace('_', ' ')})" if audit.get("phase") else ""
    return f"audit {audit['id']}: {audit['status']}{phase} {bar(audit.get('progress'))}"
