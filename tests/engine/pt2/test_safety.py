"""A .pt2 archive is read without unpickling: a malicious pickle planted in any pickle-bearing member never runs;
operators outside the allowlist, strings that torch would turn into code, and damaged archives are coded errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from tests.engine.pt2.conftest import edit_program, rewritten
from worker.engine.audit import audit_network
from worker.engine.formats import detect_format


class _WritesMarker:
    """Unpickling this opens (creates) the marker file: proof that the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _malicious(marker: Path) -> bytes:
    return pickle.dumps(_WritesMarker(marker))


def _audit(path: Path):
    return audit_network(path, options=AuditOptions(), device="cpu")


def _refused(path: Path) -> AuditError:
    with pytest.raises(AuditError) as raised:
        _audit(path)
    return raised.value


def _pickled_weight(marker: Path):
    def edit(members: dict[str, bytes]) -> None:
        config = json.loads(members["data/weights/model_weights_config.json"])
        entry = next(iter(config["config"].values()))
        entry["use_pickle"] = True
        members["data/weights/" + entry["path_name"]] = _malicious(marker)
        members["data/weights/model_weights_config.json"] = json.dumps(config).encode()

    return edit


def _pickled_constant(prefix: str, marker: Path):
    def edit(members: dict[str, bytes]) -> None:
        members[f"data/constants/{prefix}0"] = _malicious(marker)
        members["data/constants/model_constants_config.json"] = json.dumps({"config": {"planted": {
            "path_name": f"{prefix}0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}).encode()

    return edit


def test_a_pickled_weight_would_run_under_torch_export_load(mlp_pt2, tmp_path):
    # The threat is real: torch.export.load itself unpickles such a weight with weights_only=False.
    marker = tmp_path / "marker"
    planted = rewritten(mlp_pt2, tmp_path / "planted.pt2", _pickled_weight(marker))
    with pytest.raises(Exception):  # noqa: B017 - whatever it raises afterwards, the pickle has already run
        torch.export.load(str(planted))
    assert marker.exists()


def test_a_pickled_weight_is_refused_and_never_runs(mlp_pt2, tmp_path):
    marker = tmp_path / "marker"
    planted = rewritten(mlp_pt2, tmp_path / "planted.pt2", _pickled_weight(marker))
    assert _refused(planted).code == "invalid_exported_program"
    assert not marker.exists()


@pytest.mark.parametrize("prefix", ["custom_obj_", "opaque_obj_", "tensor_"])
def test_a_pickled_constant_is_refused_and_never_runs(mlp_pt2, tmp_path, prefix):
    marker = tmp_path / "marker"
    planted = rewritten(mlp_pt2, tmp_path / "planted.pt2", _pickled_constant(prefix, marker))
    assert _refused(planted).code == "invalid_exported_program"
    assert not marker.exists()


def test_the_sample_inputs_pickle_is_never_read(mlp_pt2, tmp_path):
    marker = tmp_path / "marker"

    def plant(members: dict[str, bytes]) -> None:
        members["data/sample_inputs/model.pt"] = _malicious(marker)

    result = _audit(rewritten(mlp_pt2, tmp_path / "planted.pt2", plant))
    assert result.verdict == "healthy" and not marker.exists()


def test_guards_code_is_never_executed(mlp_pt2, tmp_path):
    marker = tmp_path / "marker"

    def plant(program: dict) -> None:
        program["guards_code"] = [f"open({str(marker)!r}, 'w') is not None"]

    result = _audit(rewritten(mlp_pt2, tmp_path / "planted.pt2", lambda m: edit_program(m, plant)))
    assert len(result.layers) == 5 and not marker.exists()


@pytest.mark.parametrize("field, value", [
    ("name", "linear = open('MARKER', 'w')\n    linear"),  # a node name becomes code in the GraphModule
    ("expr_str", "__import__('os').system('touch MARKER')"),  # sympify evaluates expressions
])
def test_strings_torch_would_run_are_refused(mlp_pt2, tmp_path, field, value):
    marker = tmp_path / "MARKER"
    value = value.replace("MARKER", str(marker))

    def plant(program: dict) -> None:
        node = program["graph_module"]["graph"]["nodes"][0]
        if field == "name":
            node["outputs"][0]["as_tensor"]["name"] = value
        else:
            node["inputs"][-1]["arg"] = {"as_sym_int": {"as_expr": {"expr_str": value, "hint": None}}}

    error = _refused(rewritten(mlp_pt2, tmp_path / "planted.pt2", lambda m: edit_program(m, plant)))
    assert error.code == "invalid_exported_program" and not marker.exists()


@pytest.mark.parametrize("target", ["torch.ops.aten.from_file.default", "torch.save", "builtins.exec",
                                    "torch.ops.mylib.anything.default", "torch.ops.higher_order.cond",
                                    "torch.ops.aten.save.default", "torch.ops.aten._print.default",
                                    "torch.ops.image.read_file.default", "torch.ops.aten.wait.default",
                                    "torch.ops.prims.empty_strided.default",
                                    "torch.ops.aten.lgamma.default"])  # pure, but no network used it: not listed
def test_operators_outside_the_allowlist_are_refused(mlp_pt2, tmp_path, target):
    def plant(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = target

    error = _refused(rewritten(mlp_pt2, tmp_path / "op.pt2", lambda m: edit_program(m, plant)))
    assert error.code == "unsafe_operator" and f"'{target}'" in error.detail


def test_a_truncated_program_is_a_coded_error(mlp_pt2, tmp_path):
    def cut(members: dict[str, bytes]) -> None:
        members["models/model.json"] = members["models/model.json"][:100]

    path = rewritten(mlp_pt2, tmp_path / "cut.pt2", cut)
    assert detect_format(path) == "pt2"
    assert _refused(path).code == "invalid_exported_program"


def test_missing_weights_are_a_coded_error(mlp_pt2, tmp_path):
    def drop(members: dict[str, bytes]) -> None:
        del members["data/weights/weight_0"]

    assert _refused(rewritten(mlp_pt2, tmp_path / "w.pt2", drop)).code == "invalid_exported_program"


def test_garbage_named_pt2_is_unsupported_format(tmp_path):
    path = tmp_path / "garbage.pt2"
    path.write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    assert _refused(path).code == "unsupported_format"
