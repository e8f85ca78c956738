"""The labelled development suite (suites/diagnosis.py), fast subset: one configuration per family, each audited
end to end.

The full sweep over depth, width and seed, in both formats, is bench/score_diagnosis.py.
"""

from __future__ import annotations

import pytest

from suites.diagnosis import cases, export
from worker.diagnosis.diagnose import FINDING_CODES, RECOMMENDATION_CODES
from worker.engine.audit import audit_network

ONNX_SUBSET = ("glorot_sigmoid_d6", "zhang_unnormalised", "negative_bias_-3", "healthy_transformer",
               "pascanu_contracting", "symmetric_zero_relu")


def _audit(case, network_format, tmp_path):
    path, options = export(case, network_format, tmp_path)
    return audit_network(path, options=options, device="cpu", external_data_dir=path.parent)


def _raised(result) -> set[str]:
    return {f["code"] for f in result.findings if f["severity"] in ("warning", "critical")}


def _assert_well_formed(result):
    for f in result.findings:
        assert f["code"] in FINDING_CODES and f["layers"] and f["evidence"] and 0 < f["confidence"] <= 1
        assert f["recommendations"] and all(r["code"] in RECOMMENDATION_CODES and r["text"]
                                            for r in f["recommendations"])


@pytest.mark.slow
@pytest.mark.parametrize("case", cases("fast"), ids=[c.name for c in cases("fast")])
def test_torchscript_case_gets_its_expected_findings_and_fix(case, tmp_path):
    result = _audit(case, "torchscript", tmp_path)
    _assert_well_formed(result)
    assert _raised(result) == case.expected
    if case.fixes:
        assert result.findings[0]["recommendations"][0]["code"] in case.fixes
    else:
        assert result.verdict == "healthy"


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ONNX_SUBSET)
def test_onnx_export_of_the_case_is_diagnosed_the_same(prefix, tmp_path):
    case = next(c for c in cases("fast") if c.name.startswith(prefix))
    result = _audit(case, "onnx", tmp_path)
    assert _raised(result) == case.expected
    assert not case.fixes or result.findings[0]["recommendations"][0]["code"] in case.fixes


def test_the_verdict_is_the_worst_severity(tmp_path):
    case = next(c for c in cases("fast") if c.name.startswith("symmetric_zero_relu"))
    result = _audit(case, "torchscript", tmp_path)
    assert result.verdict == "critical" and result.findings[0]["severity"] == "critical"
