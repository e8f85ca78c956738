"""The batch an audit feeds the network: synthetic from shapes and a seed, or a user's .npz file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from gradaudit.errors import AuditError
from gradaudit.options import AuditOptions
from worker.engine.network import InputSpec
from worker.engine.sizes import declared_bytes, memory_budget, refuse_past_budget, refuse_total_past_budget


def build_inputs(specs: list[InputSpec], options: AuditOptions, inputs_path: Path | None = None) -> dict[str, torch.Tensor]:
    """CPU tensors by input name, in the network's input order."""
    if inputs_path is not None:
        return _from_npz(specs, inputs_path)
    _refuse_unknown_names(specs, options)
    shapes = {spec.name: resolve_shape(spec, options) for spec in specs}
    _refuse_oversized(specs, shapes, options.batches)
    generator = torch.Generator().manual_seed(options.seed)
    return {spec.name: _synthetic(spec, shapes[spec.name], generator) for spec in specs}


def _refuse_oversized(specs: list[InputSpec], shapes: dict[str, list[int]], batches: int) -> None:
    # Every probe batch is held at once; randn draws float32 whatever the input's dtype.
    one_batch = sum(declared_bytes(shapes[spec.name], max(_itemsize(spec.dtype), 4)) for spec in specs)
    shown = ", ".join(f"{name} {shape}" for name, shape in shapes.items())[:300]
    refuse_total_past_budget(f"{batches} probe batches of inputs {shown}", one_batch * batches, memory_budget())


def _itemsize(dtype: torch.dtype | None) -> int:
    return (dtype or torch.float32).itemsize


def _refuse_unknown_names(specs: list[InputSpec], options: AuditOptions) -> None:
    known = [spec.name for spec in specs]
    unknown = sorted(set(options.input_shapes) - set(known))
    if unknown:
        raise AuditError("unknown_input", f"input_shapes names {unknown} but the network's inputs are {known}")


def resolve_shape(spec: InputSpec, options: AuditOptions) -> list[int]:
    """The concrete shape for one input: the user's entry, else the declared one with a batch size."""
    given = options.input_shapes.get(spec.name)
    if given is not None:
        if spec.dims is not None and len(given) != len(spec.dims):
            raise AuditError(
                "input_shape_mismatch",
                f"input '{spec.name}' has rank {len(spec.dims)} {_show(spec.dims)} but input_shapes gives {given}",
            )
        return list(given)
    if spec.dims is None:
        raise AuditError(
            "input_shape_required",
            f"input '{spec.name}' has no declared shape; pass input_shapes={{'{spec.name}': [...]}}",
        )
    return _fill_declared(spec, options.batch_size)


def _fill_declared(spec: InputSpec, batch_size: int) -> list[int]:
    # A fixed batch dimension is kept: the graph may hard-code it (e.g. in a Reshape).
    shape = [batch_size if (i == 0 and d is None) else d for i, d in enumerate(spec.dims)]
    if None in shape:
        dim = shape.index(None)
        raise AuditError(
            "input_shape_required",
            f"input '{spec.name}' has a dynamic dimension {dim} in {_show(spec.dims)}; "
            f"pass input_shapes={{'{spec.name}': [...]}}",
        )
    return shape


def _show(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _synthetic(spec: InputSpec, shape: list[int], generator: torch.Generator) -> torch.Tensor:
    dtype = spec.dtype or torch.float32
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, spec.vocab or 2, shape, generator=generator, dtype=dtype)


def _from_npz(specs: list[InputSpec], inputs_path: Path) -> dict[str, torch.Tensor]:
    arrays = _read_npz(inputs_path)
    known = [spec.name for spec in specs]
    extra = sorted(set(arrays) - set(known))
    if extra:
        raise AuditError("invalid_inputs", f"the .npz holds arrays {extra} that are not inputs; inputs are {known}")
    return {spec.name: _npz_tensor(spec, arrays) for spec in specs}


def _read_npz(inputs_path: Path) -> dict[str, np.ndarray]:
    _refuse_oversized_arrays(inputs_path)
    try:
        with np.load(inputs_path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise AuditError("invalid_inputs", f"not a valid .npz of arrays ({str(exc).splitlines()[0][:200]})") from None


def _npz_tensor(spec: InputSpec, arrays: dict[str, np.ndarray]) -> torch.Tensor:
    if spec.name not in arrays:
        raise AuditError("invalid_inputs", f"the .npz has no array named '{spec.name}' (it has {sorted(arrays)})")
    array = arrays[spec.name]
    if array.dtype.kind not in "fiub":
        raise AuditError("invalid_inputs", f"array '{spec.name}' has unsupported dtype {array.dtype}")
    if spec.dims is not None and array.ndim != len(spec.dims):
        raise AuditError("invalid_inputs", f"array '{spec.name}' has shape {list(array.shape)}, expected {_show(spec.dims)}")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if spec.dtype is None:
        return tensor.float() if tensor.is_floating_point() else tensor.long() if array.dtype.kind in "iu" else tensor
    if spec.dtype.is_floating_point != tensor.is_floating_point():
        raise AuditError("invalid_inputs", f"array '{spec.name}' has dtype {array.dtype}, the input expects {spec.dtype}")
    return tensor.to(spec.dtype)


def _refuse_oversized_arrays(inputs_path: Path) -> None:
    """Judge each array by its .npy header (shape, dtype) before numpy reads any data."""
    budget, total = memory_budget(), 0
    try:
        with zipfile.ZipFile(inputs_path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    shape, dtype = _npy_header(member)
                refuse_past_budget(f"array {info.filename!r} of the .npz", shape, dtype.itemsize, budget)
                total += declared_bytes(shape, dtype.itemsize)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise AuditError("invalid_inputs", f"not a valid .npz of arrays ({str(exc).splitlines()[0][:200]})") from None
    refuse_total_past_budget("the .npz's arrays together", total, budget)


def _npy_header(member) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f".npy format version {version} is not read here; numpy.savez writes 1.0")
    shape, _, dtype = readers[version](member)
    return shape, dtype
