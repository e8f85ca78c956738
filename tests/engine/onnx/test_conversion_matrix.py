"""The conversion matrix, representative subset: every family x exporter x batch kind at opsets 13, 17, 18, 21.

The full matrix (opsets 13-21, and the dynamo exporter's down-conversion below 18) takes longer than CI
should: run bench/conversion_matrix.py for it.
"""

from __future__ import annotations

import pytest

from suites.conversion import PARITY, Case, cases, check, export

pytestmark = pytest.mark.slow

SUBSET = cases(opsets=(13, 17, 18, 21))


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Export each case once per session, on first use."""
    folder, done = tmp_path_factory.mktemp("matrix"), {}

    def get(case: Case):
        if case not in done:
            done[case] = export(case, folder)
        return done[case]

    return get


@pytest.mark.parametrize("case", SUBSET, ids=[c.name for c in SUBSET])
def test_export_converts_matches_onnxruntime_and_backpropagates(case, exported):
    path = exported(case)
    if isinstance(path, str):
        pytest.skip(f"not applicable: {path}")
    result = check(case, path)
    assert result["max_abs_diff"] <= PARITY
    assert result["without_grad"] == [] and result["unhookable"] == []
    assert result["layers"] > 0
