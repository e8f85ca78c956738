"""Which TorchScript inputs hold token ids: those whose values reach an embedding's indices, directly or through
ops that only reshape or select them (GPT-2 `view`s its ids before the lookup)."""

from __future__ import annotations

import torch

# Ops that move or pick entries without computing new values: what comes out of them is still token ids.
_ID_PRESERVING = frozenset({
    "aten::view", "aten::reshape", "aten::flatten", "aten::contiguous", "aten::unsqueeze", "aten::squeeze",
    "aten::slice", "aten::select", "aten::clone", "aten::to", "aten::expand", "aten::repeat", "aten::transpose",
    "aten::permute",
})


def embedding_weight(value: torch._C.Value) -> torch._C.Value | None:
    """The weight value of the first aten::embedding that indexes with this value's entries, if any."""
    pending, seen = [value], set()
    while pending:
        current = pending.pop(0)
        if current.unique() in seen:
            continue
        seen.add(current.unique())
        for use in current.uses():
            if use.user.kind() == "aten::embedding" and use.offset == 1:
                return use.user.inputsAt(0)
            if use.user.kind() in _ID_PRESERVING and use.offset == 0:
                pending.extend(use.user.outputs())
    return None
