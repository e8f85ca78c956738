"""Networks written like Swin's attention: modules holding Linears whose weights they pass to F.linear, for the
TorchScript and .pt2 tests of tapping weights used functionally."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network

WEIGHT_LAYERS = ["embed", "blocks.0.attn", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn",
                 "blocks.1.attn.qkv", "blocks.1.attn.proj", "head"]
EXAMPLE = (4, 5, 6)  # batch, tokens, features


def attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, table):
    """Single-head attention on the projections' weights, as torchvision's shifted_window_attention is written."""
    q, k, v = F.linear(x, qkv_weight, qkv_bias).chunk(3, dim=-1)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + table
    return F.linear(scores.softmax(dim=-1) @ v, proj_weight, proj_bias)


class FunctionalAttention(nn.Module):
    """Holds qkv and proj Linears and a table of its own, never calls the Linears: passes their weights on."""

    def __init__(self, width: int, tokens: int):
        super().__init__()
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.table = nn.Parameter(torch.randn(tokens, tokens) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attention(x, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.table)


class Block(nn.Module):
    """A residual attention block, as a Swin stage's blocks sit in a Sequential."""

    def __init__(self, width: int, tokens: int):
        super().__init__()
        self.attn = FunctionalAttention(width, tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.attn(x))


class SwinLike(nn.Module):
    """An embedding, two blocks of functional attention, a head."""

    def __init__(self, features: int = 6, width: int = 8, tokens: int = 5):
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.blocks = nn.Sequential(Block(width, tokens), Block(width, tokens))
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)).mean(dim=1))


class ReadTwice(nn.Module):
    """A Linear whose weight two F.linear calls read: which is its output is ambiguous, so it stays untapped."""

    def __init__(self):
        super().__init__()
        self.shared, self.head = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        once = torch.tanh(F.linear(x, self.shared.weight, self.shared.bias))
        return self.head(F.linear(once, self.shared.weight))


class Projection(nn.Module):
    """No parameters of its own; its output is F.linear on its child's weight."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.proj.weight, self.proj.bias)


class PassesOn(nn.Module):
    """A Projection between an activation and a head: it passes proj's output on, as it would a called child's."""

    def __init__(self):
        super().__init__()
        self.block, self.head = Projection(), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.block(x)))


def swin_like() -> nn.Module:
    """SwinLike, seeded, in eval mode."""
    torch.manual_seed(0)
    return SwinLike().eval()



def audit_rows(path, **options) -> dict[str, int]:
    """Per layer of the audit's report, the number of batch rows it got."""
    result = audit_network(path, options=AuditOptions(**options), device="cpu")
    return {layer.name: len(layer.batch_rows) for layer in result.layers}
