"""worker.engine.torchscript.fastpaths: a trace that recorded PyTorch's fused inference fast paths (traced in eval
mode under no_grad) computes the same outputs after the rewrite, gets gradients, and audits as the same network
traced with the fast path disabled; what cannot be rewritten is refused with a coded error."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torchvision
from torch import nn

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from worker.engine.audit import audit_network
from worker.engine.torchscript import fused_ops
from worker.engine.torchscript.fastpaths import unfuse_fast_paths
from worker.engine.torchscript.load import load_torchscript

FUSED = ("aten::_native_multi_head_attention", "aten::_transformer_encoder_layer_fwd",
         "aten::_nested_tensor_from_mask", "aten::to_padded_tensor")
B, T, D, H = 3, 5, 16, 4


class Padded(nn.Module):
    """A TransformerEncoder reading a key padding mask: its fast path runs the layers on a nested tensor."""

    def __init__(self, encoder: nn.TransformerEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, src_key_padding_mask=padding)


class Causal(nn.Module):
    """A TransformerEncoder under a causal mask."""

    def __init__(self, encoder: nn.TransformerEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.encoder(x, mask=mask, is_causal=True)


def encoder(norm_first: bool = False, activation: str = "relu") -> nn.TransformerEncoder:
    """A small batch-first TransformerEncoder of two layers."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, 32, batch_first=True, norm_first=norm_first, activation=activation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # enable_nested_tensor's notice for norm_first
        return nn.TransformerEncoder(layer, 2).eval()


def trace(network: nn.Module, inputs: tuple, path, fast_path: bool = True) -> torch.jit.ScriptModule:
    """network traced the usual way (eval, no_grad), with or without the fast path, and saved at path."""
    torch.backends.mha.set_fastpath_enabled(fast_path)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network.eval(), inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    torch.jit.save(traced, str(path))
    return traced


def kinds(module: torch.jit.ScriptModule) -> set[str]:
    """Every node kind of the module's inlined forward."""
    return {node.kind() for node in module.inlined_graph.nodes()}


def padding_mask() -> torch.Tensor:
    """Left-aligned sequences of lengths 3, 5 and 4 (True = padding)."""
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 3:], mask[2, 4:] = True, True
    return mask


def assert_faithful(network: nn.Module, inputs: tuple, path) -> torch.jit.ScriptModule:
    """The loaded, rewritten trace computes what the fused trace computes, and back-propagates."""
    fused = trace(network, inputs, path)
    assert kinds(fused) & set(FUSED)
    loaded = load_torchscript(path).module
    assert not kinds(loaded) & set(FUSED)
    with torch.no_grad():
        expected = fused(*inputs)
    output = loaded(*inputs)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    output.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loaded.parameters())
    return loaded


# The compositions against the fused kernels themselves.

_CAUSAL = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
MASKS = {
    "none": (None, None),
    "padding": (padding_mask(), 1),
    "padding as -inf": (torch.zeros(B, T).masked_fill(padding_mask(), -math.inf), 1),
    "target x source": (_CAUSAL, 0),
    "merged": (_CAUSAL.view(1, 1, T, T).expand(B, H, T, T) | padding_mask().view(B, 1, 1, T), 2),
    "merged float": (torch.zeros(B, H, T, T).masked_fill(_CAUSAL, -math.inf), 2),
}


def weights(*shapes) -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(shape) * 0.3 for shape in shapes]


@pytest.mark.parametrize("mask_name", MASKS)
@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)])
def test_attention_equals_the_fused_kernel(mask_name, need_weights, average):
    x, qkv_w, qkv_b, proj_w, proj_b = weights((B, T, D), (3 * D, D), (3 * D,), (D, D), (D,))
    mask, mask_type = MASKS[mask_name]
    args = (x, x, x, D, H, qkv_w, qkv_b, proj_w, proj_b, mask, need_weights, average, mask_type)
    with torch.no_grad():
        expected = torch._native_multi_head_attention(*args)
    output, attention = torch.jit.script(fused_ops.multi_head_attention)(*args)
    torch.testing.assert_close(output, expected[0], rtol=1e-5, atol=1e-5)
    if need_weights:
        torch.testing.assert_close(attention, expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask_name", MASKS)
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("use_gelu", [False, True])
def test_encoder_layer_equals_the_fused_kernel(mask_name, norm_first, use_gelu):
    tensors = weights((B, T, D), (3 * D, D), (3 * D,), (D, D), (D,), (D,), (D,), (D,), (D,), (32, D), (32,), (D, 32),
                      (D,))
    x, attention, norms, ffn = tensors[0], tensors[1:5], tensors[5:9], tensors[9:]
    args = (x, D, H, *attention, use_gelu, norm_first, 1e-5, *norms, *ffn, *MASKS[mask_name])
    expected = torch._transformer_encoder_layer_fwd(*args)
    torch.testing.assert_close(torch.jit.script(fused_ops.transformer_encoder_layer)(*args), expected,
                               rtol=1e-5, atol=1e-5)


def test_a_row_masked_whole_gets_zero_weights_and_finite_gradients():
    # The CPU kernel gives NaN there; the rewrite gives what scaled_dot_product_attention, the path training
    # takes, gives: no attention at all, and no NaN reaching the loss or a gradient.
    scores = torch.randn(B, H, T, T, requires_grad=True)
    mask = padding_mask()
    mask[1] = True
    attention = torch.jit.script(fused_ops.masked_softmax)(scores, mask, 1)
    assert torch.equal(attention[1], torch.zeros(H, T, T))
    torch.testing.assert_close(attention[0].sum(-1), torch.ones(H, T))
    attention.square().sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.equal(scores.grad[1], torch.zeros(H, T, T))


# Traces of nn modules, loaded as the audit loads them.

@pytest.mark.parametrize("norm_first", [False, True])
def test_a_traced_transformer_encoder_computes_the_same_after_the_rewrite(tmp_path, norm_first):
    net = encoder(norm_first, "gelu")
    x = torch.randn(B, T, D)
    assert_faithful(net, (x,), tmp_path / "plain.pt")
    assert_faithful(Causal(net), (x,), tmp_path / "causal.pt")


def test_the_nested_tensor_padding_path_becomes_a_key_padding_mask(tmp_path):
    net, x, padding = Padded(encoder()), torch.randn(B, T, D), padding_mask()
    fused = trace(net, (x, padding), tmp_path / "fused.pt")
    assert {"aten::_nested_tensor_from_mask", "aten::to_padded_tensor"} <= kinds(fused)
    loaded = assert_faithful(net, (x, padding), tmp_path / "padded.pt")
    # Padded positions hold the padding value, as to_padded_tensor left them; another mask is read as given.
    other = torch.zeros(B, T, dtype=torch.bool)
    other[1, 2:] = True
    output = loaded(x, other)
    assert torch.equal(output[1, 2:], torch.zeros(3, D)) and output[1, :2].abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(output, fused(x, other), rtol=1e-5, atol=1e-5)


def test_a_traced_multihead_attention_returns_its_weights_too(tmp_path):
    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(D, H, batch_first=True)

        def forward(self, x, padding):
            output, attention = self.attention(x, x, x, key_padding_mask=padding, average_attn_weights=False)
            return output + attention.sum()

    assert_faithful(SelfAttention(), (torch.randn(B, T, D), padding_mask()), tmp_path / "mha.pt")


class OwnEncoderLayer(nn.Module):
    """Code calling the fused layer with parameters of its own: rewritten as ops, not as submodule calls."""

    def __init__(self):
        super().__init__()
        self.tensors = nn.ParameterList(weights((3 * 16, 16), (3 * 16,), (16, 16), (16,), (16,), (16,), (16,), (16,),
                                                (32, 16), (32,), (16, 32), (16,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tensors
        return torch._transformer_encoder_layer_fwd(x, 16, 4, t[0], t[1], t[2], t[3], True, False, 1e-5, t[4], t[5],
                                                    t[6], t[7], t[8], t[9], t[10], t[11], None, None)


def test_a_fused_layer_on_parameters_of_its_own_is_rewritten_as_ops(tmp_path):
    x, path = torch.randn(B, T, D), tmp_path / "own.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(OwnEncoderLayer())
    scripted.save(str(path))
    with torch.no_grad():
        expected = scripted(x)
    loaded = load_torchscript(path).module
    assert "aten::_transformer_encoder_layer_fwd" not in kinds(loaded)
    output = loaded(x)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    output.sum().backward()
    assert all(p.grad is not None for p in loaded.parameters())


def test_scripted_code_keeps_its_guarded_fast_path():
    # Scripted nn modules take the fast path only when, while running, no gradient is wanted: never in the probe.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(encoder())
    before = str(scripted.inlined_graph)
    assert unfuse_fast_paths(scripted) == [] and str(scripted.inlined_graph) == before


# The audit.

def small_vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                hidden_dim=32, mlp_dim=64, num_classes=10)


class EncoderClassifier(nn.Module):
    """Two TransformerEncoderLayers (post-norm, GELU) and a head on the mean token."""

    def __init__(self):
        super().__init__()
        self.encoder, self.head = encoder(activation="gelu"), nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


@pytest.mark.parametrize("build,shape,fused", [
    (small_vit, [4, 3, 32, 32], "aten::_native_multi_head_attention"),
    (EncoderClassifier, [4, T, D], "aten::_transformer_encoder_layer_fwd"),
])
def test_a_network_traced_under_no_grad_audits_as_with_the_fast_path_disabled(tmp_path, build, shape, fused):
    net, x = build(), torch.randn(1, *shape[1:])
    options = AuditOptions(input_shapes={"x": shape})
    results = {}
    for fast_path in (True, False):
        path = tmp_path / f"network_{fast_path}.pt"
        traced = trace(net, (x,), path, fast_path)
        assert (fused in kinds(traced)) is fast_path
        results[fast_path] = audit_network(path, options=options, device="cpu")
    rewritten, plain = results[True], results[False]
    assert sorted(f["code"] for f in rewritten.findings) == sorted(f["code"] for f in plain.findings)
    assert rewritten.verdict == plain.verdict and rewritten.network == plain.network
    # The same rows, observed alike: an encoder layer's submodules keep their own taps.
    assert [layer.name for layer in rewritten.layers] == [layer.name for layer in plain.layers]
    assert [bool(layer.batch_rows) for layer in rewritten.layers] == [bool(layer.batch_rows) for layer in plain.layers]
    # Every module call observed, out_proj included: only a top module's own parameters (ViT's class token) are not.
    assert [layer.name for layer in rewritten.layers if not layer.batch_rows] in ([], ["VisionTransformer"])
    for ours, theirs in zip(rewritten.layers, plain.layers):
        assert ours.grad_norm == pytest.approx(theirs.grad_norm, rel=1e-4, abs=1e-9), ours.name


# What cannot be rewritten.

class UnknownMaskType(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(D, H, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention
        return torch._native_multi_head_attention(x, x, x, 16, 4, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight,
                                                  a.out_proj.bias, mask, False, True, 3)[0]


class NestedElsewhere(nn.Module):
    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        nested = torch._nested_tensor_from_mask(x, keep, False)
        return torch.relu(nested).to_padded_tensor(0.0)


@pytest.mark.parametrize("network,what", [(UnknownMaskType, "mask_type 3"), (NestedElsewhere, "aten::relu")])
def test_what_cannot_be_rewritten_faithfully_is_refused_with_the_way_to_export(tmp_path, network, what):
    path = tmp_path / "refused.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(network()), str(path))
    with pytest.raises(AuditError) as refused:
        load_torchscript(path)
    assert refused.value.code == "unsupported_operator"
    assert what in refused.value.detail and "torch.backends.mha.set_fastpath_enabled(False)" in refused.value.detail
