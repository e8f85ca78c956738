"""Builders of the labelled development networks, each the configuration a paper studied, built in code."""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity}


def mlp(depth: int, width: int, activation: str, init=None, bias: float | None = None, classes: int = 10,
        in_features: int | None = None) -> nn.Sequential:
    """depth hidden Linear+activation blocks then a classifier; init(weight) re-initialises hidden weights."""
    blocks, features = [], in_features or width
    for _ in range(depth):
        linear = nn.Linear(features, width)
        _initialise(linear, init, bias)
        blocks += [linear, _ACTIVATIONS[activation]()]
        features = width
    blocks.append(nn.Linear(width, classes))
    return nn.Sequential(*[b for b in blocks if not isinstance(b, nn.Identity)]).eval()


def _initialise(layer: nn.Module, init, bias: float | None) -> None:
    with torch.no_grad():
        if init is not None:
            init(layer.weight)
        if bias is not None:
            layer.bias.fill_(bias)


def gaussian(sigma_w2: float):
    """W ~ N(0, sigma_w2 / fan_in): the mean-field initialisation of Schoenholz et al."""
    return lambda w: nn.init.normal_(w, 0.0, math.sqrt(sigma_w2 / _fan_in(w)))


def scaled_orthogonal(gain: float):
    """gain times a random orthogonal matrix (Saxe et al.)."""
    return lambda w: nn.init.orthogonal_(w, gain)


def constant(value: float):
    """Every weight the same value (value 0: zero initialisation)."""
    return lambda w: nn.init.constant_(w, value)


def _fan_in(weight: torch.Tensor) -> int:
    return weight[0].numel()


def plain_cnn(depth: int, channels: int, init: str, batch_norm: bool = False) -> nn.Sequential:
    """depth 3x3 convolutions with ReLU (optionally BatchNorm), He or Xavier initialised, then a classifier."""
    layers, features = [], 3
    for _ in range(depth):
        conv = nn.Conv2d(features, channels, 3, padding=1, bias=not batch_norm)
        _conv_init(conv, init)
        layers += [conv] + ([nn.BatchNorm2d(channels)] if batch_norm else []) + [nn.ReLU()]
        features = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
    return nn.Sequential(*layers)


def _conv_init(conv: nn.Conv2d, init: str) -> None:
    if init == "he":
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    else:
        nn.init.xavier_normal_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ResidualBlock(nn.Module):
    """x + f(x), f = conv-(BN)-ReLU-conv-(BN), He initialised; without BN nothing rescales the branch."""

    def __init__(self, channels: int, batch_norm: bool):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.branch = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), norm(), nn.ReLU(),
                                    nn.Conv2d(channels, channels, 3, padding=1), norm())
        for conv in (self.branch[0], self.branch[3]):
            _conv_init(conv, "he")
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.branch(x))


class ResidualCNN(nn.Module):
    """A stem convolution, `blocks` residual blocks and a classifier (He et al. 2016)."""

    def __init__(self, blocks: int, channels: int, batch_norm: bool):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        _conv_init(self.stem[0], "he")
        self.blocks = nn.Sequential(*[ResidualBlock(channels, batch_norm) for _ in range(blocks)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def calibrate_batch_norm(network: nn.Module, shape: list[int], seed: int) -> nn.Module:
    """Running statistics from a few train-mode passes, as a trained network carries them; then eval mode."""
    generator = torch.Generator().manual_seed(seed + 1000)
    network.train()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a cumulative average over the calibration batches
    with torch.no_grad():
        for _ in range(4):
            network(torch.randn([64] + shape[1:], generator=generator))
    return network.eval()


class TransformerClassifier(nn.Module):
    """A small post-norm transformer encoder over a float sequence, mean-pooled into a classifier."""

    def __init__(self, layers: int, width: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class CausalMask(nn.Module):
    """Adds `fill` (-inf, or finfo.min as GPT-2 does) to attention scores above the diagonal."""

    def __init__(self, length: int, fill: float):
        super().__init__()
        self.register_buffer("blocked", torch.ones(length, length).triu(1).bool())
        self.fill = fill

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(self.blocked, self.fill)


class CausalDecoder(nn.Module):
    """A small pre-norm GPT-style decoder over a float sequence: causal self-attention written out (so the mask
    is a layer of its own), an MLP with GELU, residuals around both; the last position is classified."""

    def __init__(self, layers: int, width: int, length: int, fill: float = float("-inf")):
        super().__init__()
        self.blocks = nn.ModuleList(_DecoderBlock(width, length, fill) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, -1])


class _DecoderBlock(nn.Module):
    def __init__(self, width: int, length: int, fill: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.project = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mask, self.softmax = CausalMask(length, fill), nn.Softmax(dim=-1)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        weights = self.softmax(self.mask(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5))
        x = x + self.project(weights @ v)
        return x + self.mlp(self.norm2(x))


class Recurrent(nn.Module):
    """A one-layer recurrent network (RNN with tanh, or LSTM) reading a float sequence, classifying its end."""

    def __init__(self, cell: str, features: int, hidden: int, radius: float | None = None):
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.RNN)(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)
        if radius is not None:
            _set_spectral_radius(self.rnn.weight_hh_l0, radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(x)
        return self.head(hidden[:, -1])


def _set_spectral_radius(weight: torch.Tensor, radius: float) -> None:
    with torch.no_grad():
        nn.init.normal_(weight)
        weight.mul_(radius / torch.linalg.eigvals(weight).abs().max())


class Unguarded(nn.Module):
    """Linear, then an unguarded exp or log, then a classifier: overflow (exp) or a negative argument (log)."""

    def __init__(self, op: str, width: int, scale: float):
        super().__init__()
        self.first, self.last, self.op = nn.Linear(width, width), nn.Linear(width, 10), op
        with torch.no_grad():
            self.first.weight.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.first(x)
        hidden = torch.exp(hidden) if self.op == "exp" else torch.log(hidden - 1.0)
        return self.last(hidden)


class SharedBlock(nn.Module):
    """One post-norm transformer-style block without attention: LayerNorm(x + W2 GELU(W1 x))."""

    def __init__(self, width: int):
        super().__init__()
        self.up, self.act, self.down = nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.down(self.act(self.up(x))))


class SharedEncoder(nn.Module):
    """One block applied `calls` times in a Python loop: ALBERT's cross-layer parameter sharing."""

    def __init__(self, width: int, calls: int):
        super().__init__()
        self.shared, self.calls = SharedBlock(width), calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.calls):
            x = self.shared(x)
        return x


class AlbertLike(nn.Module):
    """Token ids -> embedding -> LayerNorm -> one shared block called `calls` times -> mean-pooled classifier
    (Lan et al. 2020, ALBERT, without attention or the factorised embedding)."""

    def __init__(self, vocab: int = 100, width: int = 32, calls: int = 8, classes: int = 10):
        super().__init__()
        self.embedding, self.norm = nn.Embedding(vocab, width), nn.LayerNorm(width)
        self.encoder = SharedEncoder(width, calls)
        self.head = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.norm(self.embedding(ids))).mean(dim=1))


class TiedEmbedding(nn.Module):
    """Token ids -> embedding -> Linear+GELU -> mean -> output projection whose weight is the embedding's
    (Press & Wolf 2017, as language models tie their input and output embeddings)."""

    def __init__(self, vocab: int = 50, width: int = 16):
        super().__init__()
        self.embedding, self.hidden = nn.Embedding(vocab, width), nn.Linear(width, width)
        self.act = nn.GELU()
        self.decoder = nn.Linear(width, vocab, bias=False)
        self.decoder.weight = self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.act(self.hidden(self.embedding(ids))).mean(dim=1))
