"""cli/hints.py: the engine's and the API's details, in the command line's words."""

from __future__ import annotations

import pytest

from cli.hints import in_cli_terms


@pytest.mark.parametrize(("detail", "said"), [
    ("input 'x' has no declared shape; pass input_shapes={'x': [...]}",
     ("input 'x' has no declared shape; give its shape with --input-shape x=DIMS, batch first (e.g. --input-shape "
      "x=8x32)")),
    ("input 'input.1' has a dynamic dimension 1 in [?, ?, 32]; pass input_shapes={'input.1': [...]}",
     ("input 'input.1' has a dynamic dimension 1 in [?, ?, 32]; give its shape with --input-shape input.1=DIMS, "
      "batch first (e.g. --input-shape input.1=8x32)")),
    ("input 'x' has rank 2 [?, 32] but input_shapes gives [8, 3, 32]",
     "input 'x' has rank 2 [?, 32] but --input-shape gives 8x3x32"),
    ("input_shapes names ['y'] but the network's inputs are ['x']",
     "--input-shape names ['y'] but the network's inputs are ['x']"),
    ("input_shapes['x'] must be a non-empty list of positive integers below 2**63",
     "--input-shape 'x' must be a non-empty list of positive integers below 2**63"),
    ("the forward pass failed: shapes do not match", "the forward pass failed: shapes do not match"),
])
def test_details_name_the_flags(detail, said):
    assert in_cli_terms(detail) == said
