"""Verified remedies end to end on small networks (worker/remedies/audit.py): each recommendation is applied to a
copy, re-probed and judged by the finding's own metric, in both upload formats; the combined patch; the training
comparison; and the ways verification is skipped or fails without costing the audit its report."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from gradaudit.options import AuditOptions
from tests.support.networks import deep_sigmoid, export_onnx, mlp, save_torchscript
from worker.remedies import audit as remedies_audit
from worker.remedies.audit import audit_with_remedies
from worker.remedies.metrics import METRICS
from worker.remedies.verify import STATUS_ORDER, _status

WIDTH = 32


@pytest.fixture
def in_tmp(tmp_path):
    """Run in the test's folder: patched networks go to ./fixes, as in the sandbox's scratch."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def _sigmoid_onnx(folder, depth: int = 8):
    return export_onnx(deep_sigmoid(depth, WIDTH), torch.randn(4, WIDTH), folder / "net.onnx", dynamic={0: "n"})


def _first(result, code: str) -> dict:
    return next(f for f in result.findings if f["code"] == code)


def test_every_fix_of_a_vanishing_sigmoid_stack_is_measured_and_the_best_resolves_it(in_tmp):
    result = audit_with_remedies(_sigmoid_onnx(in_tmp), options=AuditOptions(verify_steps=3), device="cpu")
    vanishing = _first(result, "vanishing_gradient")
    statuses = [r["verification"]["status"] for r in vanishing["recommendations"]]
    assert statuses == sorted(statuses, key=STATUS_ORDER.index)  # ordered by measured effect
    relu = next(r for r in vanishing["recommendations"] if r["code"] == "use_relu")
    verification = relu["verification"]
    assert verification["status"] == "resolved" and verification["metric"] == "fitted_change_decades"
    assert verification["before"] < -METRICS["vanishing_gradient"].threshold * -1 < verification["after"]
    assert "Measured on a patched copy: fitted_change_decades" in relu["text"] and "ReLU" in relu["patch"]
    assert len(verification["training"]["loss_original"]) == len(verification["training"]["loss_patched"]) == 3
    assert (in_tmp / result.fixes["vanishing_gradient/use_relu"]).is_file()
    combined = result.combined["verification"]
    assert (combined["status"], combined["verdict_before"], combined["verdict_after"]) == (
        "resolved", "critical", "healthy")
    assert result.setup["remedies"]["verified"] and result.setup["remedies"]["route"] == "the uploaded ONNX graph"


def test_a_torchscript_upload_is_verified_through_onnx_in_its_own_layer_names(in_tmp):
    path = save_torchscript(deep_sigmoid(8, WIDTH), in_tmp / "net.pt")
    options = AuditOptions(input_shapes={"input": [8, WIDTH]}, verify_steps=0)
    result = audit_with_remedies(path, options=options, device="cpu")
    relu = next(r for r in _first(result, "vanishing_gradient")["recommendations"] if r["code"] == "use_relu")
    assert relu["verification"]["status"] == "resolved"
    assert "'0'" in relu["patch"] and "/Gemm" not in relu["patch"]  # the user's module names, not ONNX's
    assert "exported to ONNX" in result.setup["remedies"]["route"]


def test_a_healthy_network_gets_no_recommendation_and_nothing_is_verified(in_tmp):
    path = export_onnx(mlp(), torch.randn(4, 6), in_tmp / "net.onnx", dynamic={0: "n"})
    result = audit_with_remedies(path, options=AuditOptions(), device="cpu")
    assert result.verdict == "healthy" and result.combined is None and result.fixes == {}
    assert result.setup["remedies"] == {"verified": False, "reason": "no recommendation to verify"}


def test_verification_can_be_turned_off_and_capped(in_tmp):
    path = _sigmoid_onnx(in_tmp)
    off = audit_with_remedies(path, options=AuditOptions(verify_remedies=False), device="cpu")
    assert off.setup["remedies"]["verified"] is False
    assert all("verification" not in r for f in off.findings for r in f["recommendations"])
    capped = audit_with_remedies(path, options=AuditOptions(verify_steps=0), device="cpu", max_verified=1)
    reasons = [r["verification"].get("reason", "") for f in capped.findings for r in f["recommendations"]]
    assert sum("GRADAUDIT_MAX_VERIFIED_REMEDIES" in reason for reason in reasons) == len(reasons) - 1


def _exploding_onnx(folder):
    """Eight ReLU layers at about 3x He's gain each: the gradient grows toward the input."""
    torch.manual_seed(0)
    network = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(WIDTH, WIDTH), nn.ReLU())],
                            nn.Linear(WIDTH, 5))
    with torch.no_grad():
        for layer in network:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(8.0)
    return export_onnx(network.eval(), torch.randn(4, WIDTH), folder / "net.onnx", dynamic={0: "n"})


def test_clipping_is_verified_by_training_with_and_without_it(in_tmp):
    path = _exploding_onnx(in_tmp)
    result = audit_with_remedies(path, options=AuditOptions(verify_steps=4), device="cpu")
    exploding = _first(result, "exploding_gradient")
    clip = next(r for r in exploding["recommendations"] if r["code"] == "clip_gradients")
    verification = clip["verification"]
    assert verification["metric"] == "max_update_to_weight" and verification["status"] != "not_applicable"
    assert verification["after"] <= verification["before"]
    assert verification["training"]["max_norm"] == clip["edit"]["max_norm"]
    assert clip["patch"] is None and "exploding_gradient/clip_gradients" not in result.fixes


def test_clipping_without_the_training_comparison_is_not_applicable_with_the_reason(in_tmp):
    path = _exploding_onnx(in_tmp)
    result = audit_with_remedies(path, options=AuditOptions(verify_steps=0), device="cpu")
    clip = next(r for f in result.findings for r in f["recommendations"] if r["code"] == "clip_gradients")
    assert clip["verification"]["status"] == "not_applicable"
    assert "training comparison is off" in clip["verification"]["reason"]


def test_a_crash_in_verification_keeps_the_report(in_tmp, monkeypatch):
    def broken(*_args, **_kwargs):
        raise KeyError("a bug in verification")

    monkeypatch.setattr(remedies_audit, "verify_remedies", broken)
    result = audit_with_remedies(_sigmoid_onnx(in_tmp), options=AuditOptions(verify_steps=0), device="cpu")
    assert result.verdict == "critical" and result.setup["remedies"]["verified"] is False
    assert {r["verification"]["status"] for f in result.findings for r in f["recommendations"]} == {"not_applicable"}


def _finding(code: str, severity: str = "critical") -> dict:
    return {"code": code, "severity": severity}


@pytest.mark.parametrize(("after_findings", "before", "after", "status"), [
    ([], -8.0, -0.5, "resolved"),
    ([_finding("vanishing_gradient", "info")], -8.0, -1.0, "resolved"),  # info is not a finding to fix
    ([_finding("dead_relu")], -8.0, -0.5, "improved"),  # gone, but a new critical one appeared
    ([_finding("vanishing_gradient")], -8.0, -4.7, "improved"),  # past halfway to -1.5 (-4.75)
    ([_finding("vanishing_gradient")], -8.0, -5.0, "no_effect"),
    ([_finding("vanishing_gradient")], -8.0, -9.0, "worse"),
])
def test_the_status_follows_the_findings_and_the_metric(after_findings, before, after, status):
    finding = _finding("vanishing_gradient")
    metric = METRICS["vanishing_gradient"]
    assert _status(finding, [finding], after_findings, metric, before, after) == status


def test_a_pt2_upload_says_why_its_fixes_are_not_verified(in_tmp):
    program = torch.export.export(deep_sigmoid(8, WIDTH), (torch.randn(8, WIDTH),))
    torch.export.save(program, str(in_tmp / "net.pt2"))
    result = audit_with_remedies(in_tmp / "net.pt2", options=AuditOptions(verify_steps=0), device="cpu")
    reasons = {r["verification"]["reason"] for f in result.findings for r in f["recommendations"]}
    assert result.findings and len(reasons) == 1 and "upload the network's ONNX export" in reasons.pop()
    assert result.setup["remedies"]["verified"] is False


def test_every_patched_network_matches_onnxruntime_as_uploads_must(in_tmp):
    """Copies are verified in memory; each written file passes the full onnx.checker, matches onnxruntime, and
    audits as its verification said."""
    import onnx

    from worker.engine.audit import audit_network
    from worker.remedies.verify import _codes

    result = audit_with_remedies(_sigmoid_onnx(in_tmp), options=AuditOptions(verify_steps=0), device="cpu")
    assert len(result.fixes) >= 3
    said = {f"{f['code']}/{r['code']}": r["verification"]["findings_after"]
            for f in result.findings for r in f["recommendations"]}
    said["combined"] = result.combined["verification"]["findings_after"]
    for key, relative in result.fixes.items():
        onnx.checker.check_model(onnx.load(in_tmp / relative), full_check=True)
        audited = audit_network(in_tmp / relative, options=AuditOptions(), device="cpu")  # parity on
        setup = audited.setup
        assert setup["onnxruntime_max_abs_diff"] <= setup["onnxruntime_tolerance"], key
        assert _codes(audited.findings) == said[key], key


def test_the_combined_patch_of_one_edit_is_that_edits_verified_copy(in_tmp):
    result = audit_with_remedies(_sigmoid_onnx(in_tmp), options=AuditOptions(verify_steps=0), device="cpu")
    assert [f["code"] for f in result.findings if f["severity"] != "info"] == ["vanishing_gradient"]
    best = result.findings[0]["recommendations"][0]
    assert result.combined["recommendations"] == [{"finding": "vanishing_gradient", "code": best["code"]}]
    assert result.combined["patch"] == best["patch"]
    assert result.fixes["combined"] == result.fixes[f"vanishing_gradient/{best['code']}"]
    assert result.combined["verification"]["findings_after"] == best["verification"]["findings_after"]


def test_combined_edits_are_made_in_turn_and_one_that_no_longer_applies_is_skipped_with_its_reason(tmp_path):
    import onnx

    from worker.remedies.base import BaseNetwork
    from worker.remedies.verify import _applied_together

    path = export_onnx(deep_sigmoid(3, WIDTH), torch.randn(4, WIDTH), tmp_path / "net.onnx", dynamic={0: "n"})
    base = BaseNetwork(onnx.load(path), "test", batches=None)
    gemms = [node.name for node in base.proto.graph.node if node.op_type == "Gemm"]
    relu = {"code": "use_relu", "text": "", "layers": gemms[:2]}
    again = {"code": "use_relu", "text": "", "layers": gemms[:1]}  # its sigmoid is a ReLU by then
    reinit = {"code": "reinit_xavier", "text": "", "layers": gemms[2:3]}
    skipped = []
    graph, applied, patch = _applied_together(
        base, [({"code": "a"}, relu), ({"code": "b"}, again), ({"code": "c"}, reinit)], AuditOptions(), skipped)
    assert [r for _, r in applied] == [relu, reinit]
    assert skipped == [{"finding": "b", "code": "use_relu", "reason": skipped[0]["reason"]}]
    assert "no sigmoid or tanh follows" in skipped[0]["reason"]
    assert [n.op_type for n in graph.proto.graph.node].count("Relu") == 2
    assert "ReLU" in patch and "xavier_normal_" in patch
    assert [n.op_type for n in base.proto.graph.node].count("Relu") == 0  # the base is left as it was


def test_only_info_findings_verify_nothing_and_each_of_their_fixes_says_why(in_tmp, monkeypatch):
    probe = remedies_audit.probe_network

    def as_info(*args, **kwargs):
        probed = probe(*args, **kwargs)
        for finding in probed.result.findings:
            finding["severity"] = "info"
        return probed

    monkeypatch.setattr(remedies_audit, "probe_network", as_info)
    result = audit_with_remedies(_sigmoid_onnx(in_tmp), options=AuditOptions(), device="cpu")
    assert result.setup["remedies"] == {"verified": False, "reason": "only info findings have recommendations, and "
                                                                     "those are not verified"}
    recommendations = [r for f in result.findings for r in f["recommendations"]]
    assert recommendations and all(r["verification"]["status"] == "not_applicable" and "info finding" in
                                   r["verification"]["reason"] for r in recommendations)
    assert result.fixes == {} and result.combined is None and not (in_tmp / "fixes").exists()
