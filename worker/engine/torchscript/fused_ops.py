"""What PyTorch's fused inference fast paths compute, written as ordinary differentiable aten ops.

nn.MultiheadAttention and nn.TransformerEncoderLayer call one fused kernel in eval mode when no gradient is
wanted (aten::_native_multi_head_attention, aten::_transformer_encoder_layer_fwd); a trace taken then records
that kernel, which has no derivative. These TorchScript functions compute the same thing from linear, matmul,
softmax and layer_norm, following the kernels' own semantics (aten/src/ATen/native/transformers/): the packed
in-projection, a mask read as booleans (any nonzero entry masks, as the kernel converts it) whose mask_type
says its shape (0: target x source, 1: batch x source key padding, 2 or none: broadcast to the scores), a row
masked whole giving zero weights, and no dropout. fastpaths.py inserts their graphs in place of the fused nodes.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_softmax(scores: Tensor, mask: Tensor | None, mask_type: int | None) -> Tensor:
    """Softmax over the last dim of (batch, heads, target, source) scores with the fused kernels' mask reading."""
    if mask is None:
        return torch.softmax(scores, -1)
    batch, heads, target, source = scores.size(0), scores.size(1), scores.size(2), scores.size(3)
    masked = mask.to(torch.bool)
    kind = 2 if mask_type is None else mask_type
    if kind == 0:
        masked = masked.view(1, 1, target, source)
    elif kind == 1:
        masked = masked.view(batch, 1, 1, source)
    elif kind != 2:
        raise RuntimeError("gradaudit: unsupported mask_type of a fused attention")
    masked = masked.expand(batch, heads, target, source)
    # A row masked whole is left unmasked for the softmax and zeroed after it: zero weights as the kernel gives,
    # and no NaN on the way, in the forward or the backward.
    whole = masked.all(-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(masked.masked_fill(whole, False), -math.inf), -1)
    return weights.masked_fill(masked, 0.0)


def multi_head_attention(query: Tensor, key: Tensor, value: Tensor, embed_dim: int, num_heads: int,
                         qkv_weight: Tensor, qkv_bias: Tensor, proj_weight: Tensor, proj_bias: Tensor,
                         mask: Tensor | None, need_weights: bool, average_attn_weights: bool,
                         mask_type: int | None) -> tuple[Tensor, Tensor]:
    """aten::_native_multi_head_attention: batch-first (batch, target, embed) in, (output, weights) out."""
    context, attention = attention_context(query, key, value, embed_dim, num_heads, qkv_weight, qkv_bias, mask,
                                           need_weights, average_attn_weights, mask_type)
    return F.linear(context, proj_weight, proj_bias), attention


def attention_context(query: Tensor, key: Tensor, value: Tensor, embed_dim: int, num_heads: int, qkv_weight: Tensor,
                      qkv_bias: Tensor, mask: Tensor | None, need_weights: bool, average_attn_weights: bool,
                      mask_type: int | None) -> tuple[Tensor, Tensor]:
    """The heads' attention, joined, before the out-projection; and the weights as the kernel returns them."""
    batch, target, source = query.size(0), query.size(1), key.size(1)
    head_dim = embed_dim // num_heads
    weights = qkv_weight.chunk(3, 0)
    biases = qkv_bias.chunk(3, 0)
    q = F.linear(query, weights[0], biases[0]).view(batch, target, num_heads, head_dim).transpose(1, 2)
    k = F.linear(key, weights[1], biases[1]).view(batch, source, num_heads, head_dim).transpose(1, 2)
    v = F.linear(value, weights[2], biases[2]).view(batch, source, num_heads, head_dim).transpose(1, 2)
    scores = torch.matmul(q / math.sqrt(head_dim), k.transpose(-2, -1))
    attention = masked_softmax(scores, mask, mask_type)
    context = torch.matmul(attention, v).transpose(1, 2).reshape(batch, target, embed_dim)
    if not need_weights:
        return context, context.new_zeros([0])
    if average_attn_weights:
        return context, attention.sum(1) / num_heads
    return context, attention


def transformer_encoder_layer(src: Tensor, embed_dim: int, num_heads: int, qkv_weight: Tensor, qkv_bias: Tensor,
                              proj_weight: Tensor, proj_bias: Tensor, use_gelu: bool, norm_first: bool, eps: float,
                              norm1_weight: Tensor, norm1_bias: Tensor, norm2_weight: Tensor, norm2_bias: Tensor,
                              ffn1_weight: Tensor, ffn1_bias: Tensor, ffn2_weight: Tensor, ffn2_bias: Tensor,
                              mask: Tensor | None, mask_type: int | None) -> Tensor:
    """aten::_transformer_encoder_layer_fwd: self-attention and feed-forward blocks, each with its residual,
    normalised before (norm_first) or after."""
    shape = [embed_dim]
    x = F.layer_norm(src, shape, norm1_weight, norm1_bias, eps) if norm_first else src
    x = multi_head_attention(x, x, x, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
                             mask, False, True, mask_type)[0] + src
    if not norm_first:
        x = F.layer_norm(x, shape, norm1_weight, norm1_bias, eps)
    residual = x
    if norm_first:
        x = F.layer_norm(x, shape, norm2_weight, norm2_bias, eps)
    hidden = F.linear(x, ffn1_weight, ffn1_bias)
    hidden = F.gelu(hidden) if use_gelu else F.relu(hidden)
    x = F.linear(hidden, ffn2_weight, ffn2_bias) + residual
    if not norm_first:
        x = F.layer_norm(x, shape, norm2_weight, norm2_bias, eps)
    return x


@functools.cache
def compiled(name: str) -> torch.jit.ScriptFunction:
    """One of these functions, scripted (once per process)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        return torch.jit.script(globals()[name])


def inlined_graph(name: str) -> torch._C.Graph:
    """A fresh copy of a scripted function's graph, its calls inlined and its tuple output split into outputs."""
    copy = compiled(name).graph.copy()
    torch._C._jit_pass_inline(copy)
    torch._C._jit_pass_lower_all_tuples(copy)
    return copy


def key_padding(keep: Tensor) -> Tensor:
    """The key padding mask (True = padding) of the mask a nested tensor was built from (True = token)."""
    return keep.logical_not()


def padded(dense: Tensor, keep: Tensor, padding: float) -> Tensor:
    """to_padded_tensor of what was a nested tensor built from keep: padding where keep is False."""
    return dense.masked_fill(keep.logical_not().unsqueeze(-1), padding)
