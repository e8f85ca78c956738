"""Operator census: every operator that real networks' TorchScript graphs (scripted and traced, every method
inlined, as worker/engine/torchscript/screen.py walks them) and torch.export programs call, against the
allowlist in worker/engine/allowed_operators.py. The allowlist was written from this census and reviewed by
hand; rerun it when torch, torchvision or transformers change, and after adding networks to suites/.

Networks: one torchvision classifier per family (weights=None), small transformers built from configurations
(BERT, GPT-2, T5, ViT, Whisper, Llama; nothing is downloaded), every network builder in suites/networks.py, one
case of each family of suites/diagnosis.py, the test networks of tests/support/networks.py, and torch.nn's
standard layers one by one (the blocks every other network is made of).

    .venv/bin/python bench/operators.py                # census; `operators: used=N allowed=N refused=N ...`
    .venv/bin/python bench/operators.py --list         # the used operators as Python, to review into the list
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.allowed_operators import OPERATORS, PYTHON_FUNCTIONS, operator_allowed
from worker.engine.torchscript.screen import module_operators

TORCHVISION = {"alexnet": 64, "convnext_tiny": 64, "densenet121": 64, "efficientnet_b0": 64,
               "efficientnet_v2_s": 64, "googlenet": 64, "inception_v3": 80, "maxvit_t": 224, "mnasnet0_5": 64,
               "mobilenet_v2": 64, "mobilenet_v3_small": 64, "regnet_y_400mf": 64, "resnet18": 64,
               "resnext50_32x4d": 64, "shufflenet_v2_x0_5": 64, "squeezenet1_0": 64, "swin_t": 64,
               "swin_v2_t": 64, "vgg11_bn": 64, "vit_b_16": 224, "wide_resnet50_2": 64}

# A network's name, its builder, and its example inputs.
Source = tuple[str, Callable[[], nn.Module], Callable[[], tuple]]


def torchvision_sources() -> Iterator[Source]:
    """One classifier of each torchvision family, at the smallest input it takes."""
    import torchvision

    for name, side in TORCHVISION.items():
        build = getattr(torchvision.models, name)
        extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
        yield (f"torchvision.{name}", lambda b=build, e=extra: b(weights=None, **e),
               lambda s=side: (torch.randn(1, 3, s, s),))


def transformer_sources() -> Iterator[Source]:
    """Small transformers from their configurations (two layers, narrow), each called as a user would."""
    import transformers as t

    plain = {"torchscript": True, "return_dict": False, "use_cache": False}  # tuples out, no cache objects
    small = {"num_hidden_layers": 2, "num_attention_heads": 2, **plain}
    tokens = lambda: (torch.randint(0, 99, (1, 8)),)
    yield "transformers.bert", lambda: t.BertModel(t.BertConfig(hidden_size=32, intermediate_size=64,
                                                                  vocab_size=99, **small)), tokens
    yield "transformers.gpt2", lambda: t.GPT2Model(t.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=99,
                                                                  **plain)), tokens
    yield "transformers.llama", lambda: t.LlamaModel(t.LlamaConfig(hidden_size=32, intermediate_size=64,
                                                                     vocab_size=99, num_key_value_heads=1,
                                                                     **small)), tokens
    yield "transformers.vit", lambda: t.ViTModel(t.ViTConfig(hidden_size=32, intermediate_size=64, image_size=32,
                                                               patch_size=8, **small)), \
        lambda: (torch.randn(1, 3, 32, 32),)
    tokens_in = {"d_model": 32, "vocab_size": 99, "use_cache": False}
    yield "transformers.t5", lambda: EncoderDecoder(t.T5Model(t.T5Config(
        d_ff=64, d_kv=16, num_layers=2, num_heads=2, **tokens_in)), "input_ids"), \
        lambda: (torch.randint(0, 99, (1, 8)), torch.randint(0, 99, (1, 4)))
    yield "transformers.whisper", lambda: EncoderDecoder(t.WhisperModel(t.WhisperConfig(
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=16, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1, **tokens_in)), "input_features"), \
        lambda: (torch.randn(1, 16, 32), torch.randint(0, 99, (1, 4)))


class EncoderDecoder(nn.Module):
    """An encoder-decoder transformer called with its encoder's input and the decoder's tokens, as a user would,
    returning the decoder's last hidden state (its own output is a dataclass neither trace nor export return)."""

    def __init__(self, network: nn.Module, encoder_input: str):
        super().__init__()
        self.network, self.encoder_input = network, encoder_input

    def forward(self, encoder_input: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.network(**{self.encoder_input: encoder_input},
                            decoder_input_ids=decoder_input_ids).last_hidden_state


def _layers() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    """torch.nn's standard layers, the blocks networks are built of, with an input shape each takes."""
    image, sequence, volume = (2, 4, 8, 8), (2, 4, 8), (2, 4, 4, 4, 4)
    layers = {name: (getattr(nn, name), image) for name in (
        "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus", "Softsign",
        "Tanhshrink", "Hardshrink", "Softshrink", "PReLU", "LogSigmoid", "Sigmoid", "Tanh", "Hardtanh", "Hardswish",
        "Hardsigmoid", "Softmax2d", "Identity", "Flatten", "Dropout", "Dropout2d", "AlphaDropout")}
    layers |= {
        "Conv1d": (lambda: nn.Conv1d(4, 4, 3, padding=1), sequence), "Conv3d": (lambda: nn.Conv3d(4, 4, 3), volume),
        "ConvTranspose1d": (lambda: nn.ConvTranspose1d(4, 4, 2), sequence),
        "ConvTranspose2d": (lambda: nn.ConvTranspose2d(4, 4, 2, stride=2), image),
        "ConvTranspose3d": (lambda: nn.ConvTranspose3d(4, 4, 2), volume),
        "MaxPool1d": (lambda: nn.MaxPool1d(2), sequence), "MaxPool2d": (lambda: nn.MaxPool2d(2), image),
        "MaxPool3d": (lambda: nn.MaxPool3d(2), volume), "AvgPool1d": (lambda: nn.AvgPool1d(2), sequence),
        "AvgPool3d": (lambda: nn.AvgPool3d(2), volume), "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), image),
        "AdaptiveAvgPool1d": (lambda: nn.AdaptiveAvgPool1d(2), sequence),
        "AdaptiveAvgPool3d": (lambda: nn.AdaptiveAvgPool3d(2), volume),
        "BatchNorm1d": (lambda: nn.BatchNorm1d(4), sequence), "BatchNorm3d": (lambda: nn.BatchNorm3d(4), volume),
        "GroupNorm": (lambda: nn.GroupNorm(2, 4), image), "InstanceNorm2d": (lambda: nn.InstanceNorm2d(4), image),
        "LayerNorm": (lambda: nn.LayerNorm(8), image), "RMSNorm": (lambda: nn.RMSNorm(8), image),
        "LocalResponseNorm": (lambda: nn.LocalResponseNorm(2), image),
        "Upsample": (lambda: nn.Upsample(scale_factor=2), image),
        "UpsampleBilinear": (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), image),
        "PixelShuffle": (lambda: nn.PixelShuffle(2), image), "LogSoftmax": (lambda: nn.LogSoftmax(1), image),
        "Softmin": (lambda: nn.Softmin(1), image), "GLU": (lambda: nn.GLU(), image),
        "Threshold": (lambda: nn.Threshold(0.1, 0.0), image), "Unflatten": (lambda: nn.Unflatten(1, (2, 2)), image),
        "ZeroPad2d": (lambda: nn.ZeroPad2d(1), image), "ReflectionPad2d": (lambda: nn.ReflectionPad2d(1), image),
        "ReplicationPad2d": (lambda: nn.ReplicationPad2d(1), image),
        "GRU": (lambda: nn.GRU(8, 8, batch_first=True), sequence),
        "LSTM2": (lambda: nn.LSTM(8, 8, num_layers=2, bidirectional=True), sequence),
        "RNNReLU": (lambda: nn.RNN(8, 8, nonlinearity="relu"), sequence),
        "TransformerDecoderLayer": (lambda: _Decoder(), sequence),
    }
    return layers


class _Decoder(nn.Module):
    """A transformer decoder layer attending to its own input."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x, x)


def layer_sources() -> Iterator[Source]:
    """Every standard torch.nn layer, alone."""
    for name, (build, shape) in _layers().items():
        yield f"torch.nn.{name}", build, lambda s=shape: (torch.randn(s),)


def suite_sources() -> Iterator[Source]:
    """Every builder in suites/networks.py, one case per family of suites/diagnosis.py, tests' own networks."""
    from suites import diagnosis
    from suites import networks as n
    from tests.support import networks as support

    image, vector = lambda: (torch.randn(2, 3, 8, 8),), lambda: (torch.randn(2, 16),)
    tokens = lambda: (torch.randint(0, 40, (2, 6)),)
    yield "suites.mlp", lambda: n.mlp(3, 16, "tanh", classes=4), vector
    yield "suites.plain_cnn", lambda: n.plain_cnn(3, 4, "he", batch_norm=True), image
    yield "suites.residual_cnn", lambda: n.ResidualCNN(2, 4, True), image
    yield "suites.transformer", lambda: n.TransformerClassifier(2, 16), lambda: (torch.randn(2, 5, 16),)
    yield "suites.causal_decoder", lambda: n.CausalDecoder(2, 16, 5), lambda: (torch.randn(2, 5, 16),)
    for cell in ("rnn", "lstm"):
        yield f"suites.recurrent_{cell}", lambda c=cell: n.Recurrent(c, 4, 8), lambda: (torch.randn(2, 5, 4),)
    for op in ("exp", "log"):
        yield f"suites.unguarded_{op}", lambda o=op: n.Unguarded(o, 16, 1.0), vector
    yield "suites.shared_encoder", lambda: n.SharedEncoder(16, 3), lambda: (torch.randn(2, 5, 16),)
    yield "suites.albert_like", lambda: n.AlbertLike(40, 16, 2, 3), tokens
    yield "suites.tied_embedding", lambda: n.TiedEmbedding(40, 16), tokens
    seen = set()
    for case in diagnosis.cases("full"):
        if case.family not in seen:
            seen.add(case.family)
            yield f"diagnosis.{case.name}", case.network, lambda c=case: (torch.randn(c.shape),)
    yield "tests.mlp", support.mlp, lambda: (torch.randn(2, 6),)
    yield "tests.deep_sigmoid", support.deep_sigmoid, lambda: (torch.randn(2, 32),)
    yield "tests.cnn_bn", support.cnn_bn, image
    yield "tests.token_network", support.token_network, lambda: (torch.randint(0, 50, (2, 5)),)
    yield "tests.log_of_negative", support.LogOfNegative, lambda: (torch.randn(2, 4),)
    yield "classifier_with_predictions", Predicts, lambda: (torch.randn(2, 6),)


class Predicts(nn.Module):
    """A classifier that returns its predicted classes beside its logits, as tests/engine's networks do."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        return logits.argmax(dim=1), logits


def census(name: str, build: Callable[[], nn.Module], example: Callable[[], tuple]) -> dict[str, set[str]]:
    """The operators of one network by route: 'script', 'trace' and 'export' (a route that fails is left out)."""
    torch.manual_seed(0)
    try:
        network = build().eval()
    except Exception as exc:  # noqa: BLE001 - a network this library version cannot build is left out, said so
        print(f"  {name}: not built ({type(exc).__name__}: {str(exc).splitlines()[0][:90]})")
        return {}
    inputs = example()
    found: dict[str, set[str]] = {}
    routes = {"script": lambda: set(module_operators(torch.jit.script(network))),
              "trace": lambda: set(module_operators(torch.jit.trace(network, inputs, strict=False, check_trace=False))),
              "export": lambda: _exported(torch.export.export(network, inputs))}
    for route, collect in routes.items():
        try:
            found[route] = collect()
        except Exception as exc:  # noqa: BLE001 - not every network scripts: the census says which and goes on
            print(f"  {name} {route}: not available ({type(exc).__name__}: {str(exc).splitlines()[0][:90]})")
    return found


def _exported(program: torch.export.ExportedProgram) -> set[str]:
    names = set()
    for module in program.graph_module.modules():  # submodules hold the branches of higher-order ops
        if isinstance(module, torch.fx.GraphModule):
            names |= {_target_name(node.target) for node in module.graph.nodes if node.op == "call_function"}
    return names


def _target_name(target) -> str:
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return schema.name
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order::{target.__name__}"
    return f"{target.__module__}.{target.__qualname__}"


def _sources(groups: list[str]) -> Iterator[Source]:
    makers = {"torchvision": torchvision_sources, "transformers": transformer_sources, "suites": suite_sources,
              "layers": layer_sources}
    for group in groups:
        yield from makers[group]()


def main() -> None:
    """Run the census and print what the allowlist refuses and what it allows that no network used."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["suites", "layers", "torchvision", "transformers"])
    parser.add_argument("--list", action="store_true", help="print every used operator as a Python set")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.backends.mha.set_fastpath_enabled(False)  # the fused eval path neither traces nor exports
    used: dict[str, set[str]] = {}
    networks = 0
    for name, build, example in _sources(args.groups):
        networks += 1
        for route, operators in census(name, build, example).items():
            for operator in operators:
                used.setdefault(operator, set()).add(f"{name}:{route}")
    refused = sorted(op for op in used if not operator_allowed(op))
    for op in refused:
        print(f"refused {op}  ({', '.join(sorted(used[op])[:3])}{', ...' if len(used[op]) > 3 else ''})")
    if args.list:
        print("{\n" + "".join(f"    {op!r},\n" for op in sorted(used)) + "}")
    unused = sorted((OPERATORS | PYTHON_FUNCTIONS) - used.keys())
    print(f"allowed but unused here: {', '.join(unused) or '-'}")
    print(f"operators: networks={networks} used={len(used)} allowed={len(OPERATORS)} refused={len(refused)}")


if __name__ == "__main__":
    main()
