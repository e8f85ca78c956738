"""ONNX LSTM, GRU and RNN with every input taken at run time, following the operator spec step by step.

Used where onnx2pytorch's nn.LSTM-based wrappers cannot be: weights that are not initializers, and the
attributes it refuses (layout=1, activations, clip, peepholes, input_forget).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_ACTIVATIONS = {
    "Sigmoid": lambda x, a, b: torch.sigmoid(x),
    "Tanh": lambda x, a, b: torch.tanh(x),
    "Relu": lambda x, a, b: torch.relu(x),
    "LeakyRelu": lambda x, a, b: F.leaky_relu(x, 0.01 if a is None else a),
    "ThresholdedRelu": lambda x, a, b: torch.where(x > (1.0 if a is None else a), x, torch.zeros_like(x)),
    "ScaledTanh": lambda x, a, b: a * torch.tanh(b * x),
    "HardSigmoid": lambda x, a, b: torch.clamp((0.2 if a is None else a) * x + (0.5 if b is None else b), 0, 1),
    "Elu": lambda x, a, b: F.elu(x, 1.0 if a is None else a),
    "Softsign": lambda x, a, b: F.softsign(x),
    "Softplus": lambda x, a, b: F.softplus(x),
    "Affine": lambda x, a, b: a * x + b,
}


class Recurrent(torch.nn.Module):
    """One ONNX LSTM/GRU/RNN node: returns (Y, Y_h) or, for LSTM, (Y, Y_h, Y_c)."""

    def __init__(self, op_type: str, hidden_size: int, direction: str = "forward", layout: int = 0,
                 activations=None, activation_alpha=None, activation_beta=None, clip=None,
                 linear_before_reset: int = 0, input_forget: int = 0):
        super().__init__()
        self.op_type, self.hidden_size, self.direction, self.layout = op_type, hidden_size, direction, layout
        self.clip, self.linear_before_reset, self.input_forget = clip, linear_before_reset, input_forget
        self.activations = _per_direction(op_type, direction, activations, activation_alpha, activation_beta)

    def forward(self, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
        if self.layout:
            x = x.transpose(0, 1)
            initial_h = None if initial_h is None else initial_h.transpose(0, 1)
            initial_c = None if initial_c is None else initial_c.transpose(0, 1)
        results = [self._direction(d, x, w[d], r[d], None if b is None else b[d], sequence_lens,
                                   _state(initial_h, d, x, self.hidden_size), _state(initial_c, d, x, self.hidden_size),
                                   None if p is None else p[d]) for d in range(w.shape[0])]
        y = torch.stack([ys for ys, _, _ in results], 1)  # [T, dirs, N, H]
        y_h = torch.stack([h for _, h, _ in results])
        y_c = torch.stack([c for _, _, c in results])
        if self.layout:
            y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        return (y, y_h, y_c) if self.op_type == "LSTM" else (y, y_h)

    def _direction(self, d, x, w, r, b, lengths, h, c, p):
        reverse = self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)
        w_bias, r_bias = (b.chunk(2) if b is not None else (0, 0))
        projected = x @ w.t() + w_bias
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        ys = [None] * x.shape[0]
        for t in steps:
            new_h, new_c = self._cell(projected[t], h, c, r, r_bias, p, self.activations[d])
            if lengths is not None:
                # Past a sequence's length the state carries over and Y is zero (spec); reverse starts later.
                valid = (t < lengths.to(x.device)).unsqueeze(1)
                new_h, new_c = torch.where(valid, new_h, h), torch.where(valid, new_c, c)
                ys[t] = torch.where(valid, new_h, torch.zeros_like(new_h))
            else:
                ys[t] = new_h
            h, c = new_h, new_c
        return torch.stack(ys), h, c

    def _cell(self, projected, h, c, r, r_bias, p, acts):
        gates = self._clip(projected + h @ r.t() + r_bias) if self.op_type != "GRU" else None
        if self.op_type == "RNN":
            return acts[0](gates), c
        if self.op_type == "LSTM":
            return self._lstm_cell(gates, c, p, acts)
        return self._gru_cell(projected, h, r, r_bias, acts), c

    def _lstm_cell(self, gates, c, p, acts):
        i, o, f, candidate = gates.chunk(4, -1)
        p_i, p_o, p_f = p.chunk(3) if p is not None else (0, 0, 0)
        i = acts[0](i + p_i * c)
        f = 1 - i if self.input_forget else acts[0](f + p_f * c)
        c = f * c + i * acts[1](candidate)
        o = acts[0](o + p_o * c)
        return o * acts[2](c), c

    def _gru_cell(self, projected, h, r, r_bias, acts):
        x_z, x_r, x_h = projected.chunk(3, -1)
        r_z, r_r, r_h = r.chunk(3)
        b_z, b_r, b_h = r_bias.chunk(3) if isinstance(r_bias, torch.Tensor) else (0, 0, 0)
        z = acts[0](self._clip(x_z + h @ r_z.t() + b_z))
        reset = acts[0](self._clip(x_r + h @ r_r.t() + b_r))
        if self.linear_before_reset:
            candidate = acts[1](self._clip(x_h + reset * (h @ r_h.t() + b_h)))
        else:
            candidate = acts[1](self._clip(x_h + (reset * h) @ r_h.t() + b_h))
        return (1 - z) * candidate + z * h

    def _clip(self, x):
        return x if self.clip is None else torch.clamp(x, -self.clip, self.clip)


def _state(initial, d: int, x: torch.Tensor, hidden: int) -> torch.Tensor:
    if initial is None:
        return x.new_zeros(x.shape[1], hidden)
    return initial[d]


def _per_direction(op_type, direction, names, alphas, betas) -> list[list]:
    count = len(_DEFAULT_ACTIVATIONS[op_type])
    directions = 2 if direction == "bidirectional" else 1
    names = list(names or _DEFAULT_ACTIVATIONS[op_type] * directions)
    alphas, betas = list(alphas or []), list(betas or [])
    functions = []
    for index, name in enumerate(names):
        alpha = alphas[index] if index < len(alphas) else None
        beta = betas[index] if index < len(betas) else None
        functions.append(lambda x, f=_ACTIVATIONS[name], a=alpha, b=beta: f(x, a, b))
    return [functions[d * count:(d + 1) * count] for d in range(directions)]


class RecurrentOutput(torch.nn.Module):
    """Picks one output of a Recurrent module's tuple, so each ONNX output is its own graph value."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, outputs: tuple) -> torch.Tensor:
        return outputs[self.index]
