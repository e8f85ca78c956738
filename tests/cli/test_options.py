"""cli/options.py and the commands' help: every audit option has a flag with its help on `audit` and `submit`,
every flag of every command is explained, the README's CLI section names them all, and a refusal names the flag."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.main import main
from cli.options import audit_options, flag_of
from gradaudit.options import AuditOptions

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ONLY = {"webhook_url"}  # the service posts it; a local audit has nobody to tell


def _command(name: str) -> click.Command:
    return main.commands[name]


def _flags(command: click.Command) -> set[str]:
    return {flag for param in command.params if isinstance(param, click.Option) for flag in param.opts}


@pytest.mark.parametrize("name", ["audit", "submit"])
def test_every_audit_option_has_a_flag(name):
    fields = set(AuditOptions.model_fields) - (SERVICE_ONLY if name == "audit" else set())
    assert {flag_of(field) for field in fields} <= _flags(_command(name))


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_flag_and_argument_of_every_command_is_explained(name):
    command = _command(name)
    commands = command.commands.values() if isinstance(command, click.Group) else [command]
    for each in commands:
        assert each.help, each.name
        unexplained = [param.opts for param in each.params if isinstance(param, click.Option) and not param.help]
        assert not unexplained, (each.name, unexplained)


def test_the_readme_names_every_flag_of_the_commands_that_audit():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    cli_section = readme[readme.index("## The CLI"):readme.index("\n## ", readme.index("## The CLI") + 1)]
    named = set(re.findall(r"--[a-z][a-z-]*", cli_section))
    for name in ("audit", "submit", "show", "compare"):
        missing = {flag for flag in _flags(_command(name)) if flag.startswith("--")} - named - {"--help"}
        assert not missing, (name, sorted(missing))


@pytest.mark.parametrize(("given", "flag", "message"), [
    ({"batch_size": 0}, "--batch-size", "greater than or equal to 1"),
    ({"batches": 65}, "--batches", "less than or equal to 64"),
    ({"learning_rate": 0.0}, "--learning-rate", "greater than 0"),
    ({"verify_steps": 201}, "--verify-steps", "less than or equal to 200"),
])
def test_a_refused_option_names_its_flag(given, flag, message):
    with pytest.raises(click.BadParameter) as refused:
        audit_options(**given)
    assert refused.value.param_hint == flag and message in refused.value.message


def test_a_refused_shape_is_said_in_flags():
    with pytest.raises(click.BadParameter) as refused:
        audit_options(("x=0x3",))
    assert refused.value.param_hint == "--input-shape"
    assert refused.value.message.startswith("--input-shape 'x' must be a non-empty list of positive integers")


def test_a_bad_option_is_a_usage_error_naming_the_flag(tmp_path):
    network = tmp_path / "net.onnx"
    network.write_bytes(b"\x08\x07:\x00")
    result = CliRunner().invoke(main, ["audit", str(network), "--batch-size", "0"])
    assert result.exit_code == 2 and "Invalid value for --batch-size: Input should be greater than or equal to 1" \
        in result.stderr


def test_given_options_reach_the_options_and_the_rest_stay_unset():
    options = audit_options(("x=8x32",), batches=2, train_steps=3, optimizer="adam", learning_rate=0.1,
                            normalization="running", verify=False, verify_steps=0, batch_size=None, seed=None)
    assert options.model_dump(exclude_unset=True) == {
        "input_shapes": {"x": [8, 32]}, "batches": 2, "train_steps": 3, "optimizer": "adam", "learning_rate": 0.1,
        "normalization": "running", "verify_remedies": False, "verify_steps": 0}
