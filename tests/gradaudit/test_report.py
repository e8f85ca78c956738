"""gradaudit.report: the v1 report document and its text rendering."""

from __future__ import annotations

from gradaudit.report import LAYER_LEGEND, REPORT_VERSION, build_report, render_text

NETWORK = {"format": "onnx", "sha256": "ab" * 32, "parameters": 1234567, "layers": 2}
SETUP = {"device": "cpu", "batch_size": 8, "seed": 0, "loss": "mse", "input_shapes": {"x": [8, 4]}}
LAYERS = [
    {"name": "features.0", "kind": "Conv", "depth": 0, "parameters": 1200, "weight_norm": 2.0, "grad_norm": 1.5e-7,
     "grad_mean_abs": 1e-9, "grad_std": 1e-9, "grad_max_abs": 1e-8, "grad_zero_fraction": 0.0,
     "grad_nonfinite": 0, "grad_to_weight": 7.5e-8},
    {"name": "a_very_long_layer_name_that_is_cut_at_32", "kind": "Gemm", "depth": 1, "parameters": 10,
     "weight_norm": 1.0, "grad_norm": 0.25, "grad_mean_abs": 0.1, "grad_std": 0.1, "grad_max_abs": 0.5,
     "grad_zero_fraction": 0.5, "grad_nonfinite": 0, "grad_to_weight": 0.25},
]
FINDINGS = [
    {"code": "vanishing_gradients", "severity": "critical", "title": "Gradients vanish toward the input",
     "recommendations": [{"code": "normalise", "text": "add normalisation layers"},
                         {"code": "residual", "text": "add skip connections"}]},
    {"code": "dead_units", "severity": "warning", "title": "Half of the gradients are zero"},
]


def report(**changes) -> dict:
    """A v1 report with the fixtures above."""
    fields = dict(audit_id="a1", network=NETWORK, setup=SETUP, layers=LAYERS, findings=FINDINGS,
                  verdict="critical") | changes
    return build_report(**fields)


def test_build_report_shape():
    unmeasured = [{**layer, "output_grad": None, "activation": None} for layer in LAYERS]
    assert report() == {"id": "a1", "status": "succeeded", "report_version": REPORT_VERSION, "network": NETWORK,
                         "setup": SETUP, "layers": unmeasured, "findings": FINDINGS, "verdict": "critical",
                         "combined": None}
    assert list(report()) == ["id", "status", "report_version", "network", "setup", "layers", "findings", "verdict",
                              "combined"]
    assert REPORT_VERSION == 1


def test_local_report_has_no_id():
    assert report(audit_id=None)["id"] is None


def test_render_text():
    assert render_text(report()).splitlines() == [
        "verdict: CRITICAL",
        "network: onnx, 1,234,567 parameters in 2 layers",
        "setup:   device=cpu, batch_size=8, seed=0, loss=mse",
        "",
        "[critical] vanishing_gradients: Gradients vanish toward the input",
        "    fix (normalise): add normalisation layers",
        "    fix (residual): add skip connections",
        "[warning] dead_units: Half of the gradients are zero",
        "",
        "depth  layer                            kind                     params    out_grad   grad_norm grad/weight",
        "    0  features.0                       Conv                       1200           -   1.500e-07   7.500e-08",
        "    1  a_very_long_layer_name_that_is_c Gemm                         10           -   2.500e-01   2.500e-01",
        "",
        LAYER_LEGEND,
    ]


def test_the_text_table_shows_the_output_gradient_norm_and_a_dash_for_a_layer_without_parameters():
    rows = [{"batch": b, "seed": b, "numel": 32, "output_grad_norm": norm, "output_grad_mean_abs": 0.1,
             "output_grad_max_abs": 1.0, "output_grad_zero_count": 0, "output_grad_zero_fraction": 0.0,
             "output_grad_nonfinite": 0} for b, norm in ((0, 3e-3), (1, 4e-3))]
    relu = {**LAYERS[0], "name": "relu", "kind": "Relu", "parameters": 0, "weight_norm": 0.0, "grad_norm": 0.0,
            "grad_to_weight": 0.0, "batch_rows": rows}
    line = render_text(report(layers=[relu])).splitlines()[-3]
    assert line.split()[-3:] == ["3.536e-03", "-", "-"]  # sqrt((3e-3^2 + 4e-3^2) / 2)


def test_render_text_without_findings_or_optional_setup():
    lines = render_text(report(findings=[], verdict="healthy", setup={"device": "cuda"}, layers=[])).splitlines()
    assert lines[0] == "verdict: HEALTHY"
    assert lines[2] == "setup:   device=cuda"
    assert lines[4] == "no findings"
    assert len(lines) == 9  # header and legend of an empty layer table



def test_report_layers_carry_the_layer_record_s_fields_and_their_summaries():
    from gradaudit.schema import LAYER_FIELDS, ReportLayer

    assert set(ReportLayer.__annotations__) == set(LAYER_FIELDS) | {"output_grad", "activation"}
