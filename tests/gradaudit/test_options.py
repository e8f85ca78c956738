"""gradaudit.options: what one audit may ask for, validated once for the API and the CLI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gradaudit.options import AuditOptions


def test_empty_options_take_the_defaults():
    defaults = AuditOptions.model_validate_json("{}").model_dump()
    assert defaults.items() >= {"input_shapes": {}, "batch_size": 8, "seed": 0, "loss": "auto"}.items()
    assert defaults == AuditOptions().model_dump()


def test_every_field():
    options = AuditOptions.model_validate({"input_shapes": {"x": [1, 3, 8, 8], "y": [4]}, "batch_size": 4096,
                                           "seed": 2**32 - 1, "loss": "cross_entropy"})
    assert options.input_shapes == {"x": [1, 3, 8, 8], "y": [4]}
    assert (options.batch_size, options.seed, options.loss) == (4096, 2**32 - 1, "cross_entropy")


@pytest.mark.parametrize("fields", [
    {"unknown": 1},
    {"input_shapes": {"x": []}},
    {"input_shapes": {"x": [1, 0]}},
    {"input_shapes": {"x": [1, -3]}},
    {"input_shapes": {"x": "1x3"}},
    {"input_shapes": [[1, 3]]},
    {"batch_size": 0},
    {"batch_size": 4097},
    {"seed": -1},
    {"seed": 2**32},
    {"loss": "hinge"},
])
def test_invalid_options_are_refused(fields):
    with pytest.raises(ValidationError):
        AuditOptions.model_validate(fields)


def test_error_names_the_input():
    with pytest.raises(ValidationError, match=r"input_shapes\['image'\] must be a non-empty list"):
        AuditOptions.model_validate({"input_shapes": {"image": [0]}})


def test_options_are_frozen():
    with pytest.raises(ValidationError):
        AuditOptions().batch_size = 2


def test_dump_round_trips():
    options = AuditOptions(input_shapes={"x": [2, 4]}, seed=3)
    assert AuditOptions.model_validate(options.model_dump()) == options


def test_schema_forbids_unknown_keys():
    assert AuditOptions.model_json_schema()["additionalProperties"] is False
