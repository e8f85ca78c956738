"""Two published rule sets, written from their rules, run on the same in-memory networks as the audit.

AUTOTRAINER (Zhang et al., ICSE 2021): vanishing when the first/last layer gradient-norm ratio is below 1e-3
and the first layer's norm below 1e-4; exploding when that ratio is above 70; dying ReLU when 70% or more of
all gradient entries are exactly zero.
SageMaker Debugger built-in rules: vanishing when a layer's mean |gradient| is below 1e-7; dead ReLU when 50%
or more of a ReLU layer's units are active in fewer than 1% of samples; saturated activation when 50% or more
of a tanh layer's inputs have |x| > 9.4999, or of a sigmoid layer's inputs x < -23 or x > 16.99999.
Both see what their tools record: parameter gradients of each module, inputs and outputs of activation
modules (functional activations are invisible to them, as to the hooks those tools install).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BATCHES, BATCH_SIZE = 3, 8


def autotrainer(network: nn.Module, shape: list[int]) -> set[str]:
    """The finding codes AUTOTRAINER's rules raise for this network."""
    record = _probe(network, shape)
    norms = [g.norm().item() for g in record["grads"]]
    found = set()
    if len(norms) >= 2 and norms[-1] > 0:
        ratio = norms[0] / norms[-1]
        if ratio < 1e-3 and norms[0] < 1e-4:
            found.add("vanishing_gradient")
        if ratio > 70:
            found.add("exploding_gradient")
    entries = sum(g.numel() for g in record["grads"])
    zeros = sum((g == 0).sum().item() for g in record["grads"])
    if record["relu_outputs"] and entries and zeros / entries >= 0.7:
        found.add("dead_relu")
    return found


def sagemaker(network: nn.Module, shape: list[int]) -> set[str]:
    """The finding codes SageMaker Debugger's built-in rules raise for this network."""
    record = _probe(network, shape)
    found = set()
    if any(g.abs().mean().item() < 1e-7 for g in record["grads"]):
        found.add("vanishing_gradient")
    for outputs in record["relu_outputs"]:
        units = torch.cat(outputs).transpose(0, 1).reshape(outputs[0].shape[1], -1) if outputs[0].dim() > 1 else None
        if units is not None and ((units > 0).double().mean(1) < 0.01).double().mean() >= 0.5:
            found.add("dead_relu")
    for kind, inputs in record["squash_inputs"]:
        x = torch.cat([t.reshape(-1) for t in inputs])
        share = (x.abs() > 9.4999) if kind == "tanh" else ((x < -23) | (x > 16.99999))
        if share.double().mean() >= 0.5:
            found.add("saturated_activation")
    return found


def _probe(network: nn.Module, shape: list[int]) -> dict:
    """Parameter gradients per parameter-owning module (input side first), ReLU outputs, tanh/sigmoid inputs."""
    relus, squashes, handles = {}, {}, []
    for module in network.modules():
        if isinstance(module, nn.ReLU):
            relus[module] = []
            handles.append(module.register_forward_hook(lambda m, i, o: relus[m].append(o.detach())))
        elif isinstance(module, (nn.Tanh, nn.Sigmoid)):
            squashes[module] = []
            handles.append(module.register_forward_hook(lambda m, i, o: squashes[m].append(i[0].detach())))
    network.zero_grad(set_to_none=True)
    for seed in range(BATCHES):
        _loss(network, shape, seed).backward()
    for handle in handles:
        handle.remove()
    owners = [m for m in network.modules() if list(m.parameters(recurse=False))]
    grads = [torch.cat([_grad(p) for p in m.parameters(recurse=False)]) for m in owners]
    squash = [("tanh" if isinstance(m, nn.Tanh) else "sigmoid", v) for m, v in squashes.items() if v]
    return {"grads": grads, "relu_outputs": [v for v in relus.values() if v], "squash_inputs": squash}


def _loss(network: nn.Module, shape: list[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    output = network(torch.randn(shape, generator=generator))
    labels = torch.randint(0, output.shape[1], (output.shape[0],), generator=generator)
    return F.cross_entropy(output, labels)


def _grad(parameter: torch.Tensor) -> torch.Tensor:
    return (parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)).detach().reshape(-1)
