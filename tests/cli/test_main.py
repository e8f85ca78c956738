"""cli.main: shape parsing, help, and the commands that need no server."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from cli.main import _gate, main
from cli.options import audit_options, parse_shapes


@pytest.mark.parametrize(("values", "expected"), [
    ((), {}),
    (("x=1x3x32x32",), {"x": [1, 3, 32, 32]}),
    (("x=8",), {"x": [8]}),
    (("image=1X3",), {"image": [1, 3]}),
    (("a=1x4", "b=2x5"), {"a": [1, 4], "b": [2, 5]}),
    (("input.1=1x4",), {"input.1": [1, 4]}),
    (("name=with=1x2",), {"name=with": [1, 2]}),
])
def test_parse_shapes(values, expected):
    assert parse_shapes(values) == expected


@pytest.mark.parametrize("value", ["x", "1x3", "=1x3", "x=", "x=1xa", "x=1x", "x=1,3", "x=1 x 3a"])
def test_parse_shapes_refuses(value):
    with pytest.raises(click.BadParameter, match="expected NAME=DIMS, e.g. x=8x32"):
        parse_shapes((value,))


def test_non_positive_dims_are_refused_by_the_options():
    with pytest.raises(click.BadParameter):
        audit_options(("x=0x3",))


def test_options_keep_only_what_was_given():
    options = audit_options(("x=1x4",), batch_size=None, seed=5, loss=None, verify=None)
    assert options.model_dump(exclude_unset=True) == {"input_shapes": {"x": [1, 4]}, "seed": 5}


@pytest.mark.parametrize(("verdict", "fail_on", "code"), [
    ("healthy", None, 0), ("critical", None, 0), ("healthy", "warning", 0), ("warning", "warning", 1),
    ("critical", "warning", 1), ("warning", "critical", 0), ("critical", "critical", 1),
])
def test_gate(verdict, fail_on, code):
    assert _gate(verdict, fail_on) == code


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "audits the gradients of ONNX, TorchScript and torch.export" in result.output
    for command in ("serve", "worker", "migrate", "audit", "submit", "keys"):
        assert command in result.output


@pytest.mark.parametrize("command", ["serve", "worker", "migrate", "audit", "submit", "keys"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


def test_audit_and_submit_share_the_probe_options():
    for command in ("audit", "submit"):
        output = CliRunner().invoke(main, [command, "--help"]).output
        for option in ("--input-shape", "--batch-size", "--seed", "--loss", "--fail-on", "--json"):
            assert option in output, (command, option)


def test_migrate_creates_the_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(main, ["migrate"], env={"DATABASE_URL": url, "GRADAUDIT_DATA_DIR": str(tmp_path)})

    assert result.exit_code == 0, result.output
    assert result.output == "database is up to date\n"
    engine = create_engine(url)
    assert {"audits", "layer_stats"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_invalid_configuration_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["migrate"], env={"GRADAUDIT_ENV": "production", "DATABASE_URL": "",
                                                        "CELERY_BROKER_URL": ""})
    assert result.exit_code == 2
    assert "invalid configuration" in result.output


def test_worker_without_broker_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["worker"], env={"CELERY_BROKER_URL": "", "GRADAUDIT_ENV": "development"})
    assert result.exit_code == 2
    assert "CELERY_BROKER_URL is not set" in result.output


def test_bad_input_shape_is_a_usage_error(tmp_path):
    network = tmp_path / "net.onnx"
    network.write_bytes(b"not used")
    result = CliRunner().invoke(main, ["audit", str(network), "--input-shape", "x=1xq"])
    assert result.exit_code == 2
    assert "expected NAME=DIMS" in result.output


def test_an_unexpected_failure_exits_2_with_a_code_not_a_traceback(tmp_path, monkeypatch):
    import cli.local
    import gradaudit.client

    def explode(*_arguments, **_options):
        raise RuntimeError("disk on fire")

    network = tmp_path / "net.onnx"
    network.write_bytes(b"\x08\x07:\x00")
    monkeypatch.setattr(cli.local, "audit_file", explode)
    monkeypatch.setattr(gradaudit.client.Client, "submit", explode)
    environment = {"GRADAUDIT_DATA_DIR": str(tmp_path)}
    for arguments in (["audit", str(network)], ["submit", str(network), "--url", "http://127.0.0.1:9"]):
        result = CliRunner().invoke(main, arguments, env=environment)
        assert result.exit_code == 2, result.output
        assert "error [internal_error]: RuntimeError: disk on fire" in result.output
        assert "Traceback" not in result.output


def test_a_local_audit_that_cannot_run_says_so_in_flags_and_with_json_prints_its_problem(tmp_path):
    from tests.support.networks import TwoLayers, save_torchscript

    network = save_torchscript(TwoLayers(), tmp_path / "net.pt")  # TorchScript declares no input shapes
    environment = {"GRADAUDIT_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["audit", str(network), "--json"], env=environment)

    assert result.exit_code == 2, result.output
    problem = json.loads(result.stdout)
    assert (problem["code"], problem["status"], problem["title"]) == ("input_shape_required", 422, "The audit failed")
    assert result.stderr == ("error [input_shape_required]: input 'x' has no declared shape; give its shape with "
                             "--input-shape x=DIMS, batch first (e.g. --input-shape x=8x32)\n")
