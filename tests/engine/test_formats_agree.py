"""The same network exported by each route a user takes today gets the same finding codes."""

from __future__ import annotations

import pytest

from suites.diagnosis import EXPORT_ROUTES, cases, export
from worker.engine.audit import audit_network

# One case per kind of network and finding: a sigmoid stack, a residual network without normalisation, a
# post-norm transformer, a causal decoder masked with finfo.min, a He ReLU MLP, a deep plain CNN with untrained
# BatchNorm (folded by the legacy exporter, fused by dynamo), plain RNNs either side of the edge, an LSTM.
AGREEING = ("glorot_sigmoid_d6w32s0", "zhang_unnormalised_b12c8s0", "healthy_transformer_d8w32s0",
            "healthy_causal_decoder_d8w32s1", "healthy_relu_mlp_d8w32s0", "he2016_plain_fresh_bn_d24c8s0",
            # The dynamo exporter unrolls recurrences into one MatMul and activation per time step.
            "pascanu_contracting_t30h32s0", "pascanu_expanding_t30h32s0", "healthy_lstm_d8w32s0")


def _raised(case, route, tmp_path) -> set[str]:
    folder = tmp_path / route
    folder.mkdir()
    path, options = export(case, route, folder)
    result = audit_network(path, options=options, device="cpu", external_data_dir=path.parent)
    return {f["code"] for f in result.findings if f["severity"] in ("warning", "critical")}


@pytest.mark.slow
@pytest.mark.parametrize("name", AGREEING)
def test_every_export_route_gets_the_same_findings(name, tmp_path):
    case = next(c for c in cases("full") if c.name == name)
    raised = {route: _raised(case, route, tmp_path) for route in EXPORT_ROUTES}
    assert all(codes == case.expected for codes in raised.values()), raised
