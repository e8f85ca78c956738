"""Token ids reshaped before their embedding lookup (GPT-2's `view`) are still recognised as token ids."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network
from worker.engine.formats import load_network


class ViewedLookup(nn.Module):
    """ids -> view(-1, T) -> embedding -> linear: what GPT-2's trace does with its input_ids."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(50, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(input_ids.view(-1, input_ids.shape[-1])[:, 1:])).mean(dim=1)


def _traced(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ViewedLookup().eval(), torch.randint(0, 50, (2, 5)))
    path = tmp_path / "viewed.pt"
    traced.save(str(path))
    return path


def test_ids_viewed_and_sliced_before_the_embedding_are_token_ids(tmp_path):
    spec = load_network(_traced(tmp_path)).inputs[0]
    assert (spec.name, spec.dtype, spec.vocab) == ("input_ids", torch.int64, 50)


def test_the_audit_feeds_them_ids_within_the_table(tmp_path):
    result = audit_network(_traced(tmp_path), options=AuditOptions(input_shapes={"input_ids": [4, 6]}), device="cpu")
    assert result.setup["inputs"]["input_ids"].startswith("integers uniform over [0, 50)")


def test_a_float_input_that_feeds_no_embedding_stays_undeclared(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(nn.Linear(3, 2).eval(), torch.randn(2, 3))
    traced.save(str(tmp_path / "linear.pt"))
    assert load_network(tmp_path / "linear.pt").inputs[0].dtype is None
