"""The audit options as command-line options, shared by `audit` and `submit`: one flag per field of
gradaudit.options.AuditOptions, each with its help, and the options built and checked from them (a refusal names
the flag, not the field)."""

from __future__ import annotations

import click
from pydantic import ValidationError

from cli.hints import in_cli_terms
from gradaudit.options import AuditOptions

# AuditOptions field -> the flag that sets it (the rest: the field's name with dashes).
FLAGS = {"input_shapes": "--input-shape", "verify_remedies": "--verify"}

_audit_options = [
    click.option("--input-shape", "input_shape", multiple=True, metavar="NAME=DIMS",
                 help="an input's shape with the batch first, e.g. x=8x32 or image=1x3x224x224; repeat for several "
                      "inputs. Needed for TorchScript (it declares no shapes) and for ONNX inputs with dynamic "
                      "dimensions other than the batch"),
    click.option("--batch-size", type=int, metavar="N",
                 help="rows of each synthetic probe batch where the network leaves the batch open (default 8)"),
    click.option("--batches", type=int, metavar="N",
                 help="synthetic probe batches, seeded SEED, SEED+1, ... (default 3; an --inputs file is the one "
                      "batch)"),
    click.option("--seed", type=int, metavar="N",
                 help="seed of the synthetic batches and the loss targets (default 0)"),
    click.option("--loss", type=click.Choice(["auto", "sum", "mse", "cross_entropy"]),
                 help="the loss differentiated (default auto: cross_entropy for an [N, C] output, else mse against "
                      "random targets)"),
    click.option("--train-steps", type=int, metavar="N",
                 help="training steps on the probe batches before the probe, to see what appears after a few "
                      "updates (default 0: the network as uploaded)"),
    click.option("--optimizer", type=click.Choice(["sgd", "adam"]),
                 help="the optimizer of --train-steps (default sgd)"),
    click.option("--learning-rate", type=float, metavar="LR", help="the learning rate of --train-steps (default 0.01)"),
    click.option("--normalization", type=click.Choice(["auto", "batch", "running"]),
                 help="the statistics BatchNorm uses during the probe (default auto: batch statistics for an "
                      "untrained BatchNorm, as training does, running statistics for a calibrated one)"),
    click.option("--verify/--no-verify", default=None,
                 help="apply every recommendation to a copy of the network and re-probe it (default: on)"),
    click.option("--verify-steps", type=int, metavar="N",
                 help="training steps of the original and of each patched copy, compared (default 20 for networks "
                      "up to 2M parameters, else 0; at most 200)"),
]
_gate_options = [
    click.option("--fail-on", type=click.Choice(["warning", "critical"]),
                 help="exit 1 when the verdict is at least this severe"),
    click.option("--json", "as_json", is_flag=True,
                 help="print the report as JSON; when the audit cannot run, the problem document (code, status, "
                      "detail) instead"),
]


def probe_options(command):
    """Attach the audit options and --fail-on/--json, shared by `audit` and `submit`."""
    for option in reversed(_audit_options + _gate_options):
        command = option(command)
    return command


def parse_shapes(values: tuple[str, ...]) -> dict[str, list[int]]:
    """--input-shape NAME=DIMS values as input_shapes."""
    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            shapes[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            name = ""
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=DIMS, e.g. x=8x32 or image=1x3x32x32",
                                     param_hint="--input-shape")
    return shapes


def audit_options(input_shape: tuple[str, ...] = (), **given) -> AuditOptions:
    """The options given on the command line (None: not given, the service's default), checked; a refusal is a
    usage error naming the flag."""
    fields = {"input_shapes": parse_shapes(input_shape), **given}
    fields["verify_remedies"] = fields.pop("verify", None)
    try:
        return AuditOptions(**{key: value for key, value in fields.items() if value is not None})
    except ValidationError as invalid:
        error = invalid.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        message = in_cli_terms(error["msg"].removeprefix("Value error, "))
        raise click.BadParameter(message, param_hint=flag_of(field)) from None


def flag_of(field: str) -> str:
    """The command-line flag of an AuditOptions field."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))
