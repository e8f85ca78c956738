"""How a command that could not do its work ends: exit 2 with `error [code]: detail` on stderr (in the command
line's words), never a traceback, and with --json the problem document on stdout, so a pipeline tells an error
(2) from a failing gate (1) and a script can read the code."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, NoReturn

import click

from cli.hints import in_cli_terms
from gradaudit.errors import ERRORS, failed_audit_status, one_line

EXIT_GATE_FAILED, EXIT_ERROR = 1, 2


def fail(code: str, detail: str, *, as_json: bool = False, problem: dict[str, Any] | None = None) -> NoReturn:
    """Report the failure and exit 2; with as_json, print the problem (the service's, else the catalogue's)."""
    if as_json:
        click.echo(json.dumps(problem or audit_problem(code, detail), indent=2))
    click.echo(f"error [{code}]: {in_cli_terms(detail)}", err=True)
    sys.exit(EXIT_ERROR)


def audit_problem(code: str, detail: str) -> dict[str, Any]:
    """The problem document of an audit that failed with code: what the service's report answers with."""
    title = "The audit failed" if code in ERRORS else code.replace("_", " ")
    return {"type": f"https://gradaudit.dev/problems/{code}", "title": title, "status": failed_audit_status(code),
            "code": code, "detail": detail}


def coded_failures(command):
    """Every failure a command meets exits 2 with a coded error, never a traceback: a pipeline reads exit 1 as a
    failing verdict."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise  # usage errors: click prints them and exits 2
        except Exception as exc:
            fail("internal_error", one_line(exc), as_json=bool(kwargs.get("as_json")))

    return run
