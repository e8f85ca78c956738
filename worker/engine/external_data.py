"""External weight files of an ONNX network: confined to the folder its archive was extracted to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import onnx

from worker.engine.errors import AuditError


def external_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the graph and its subgraphs whose data lives in another file."""
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor
    for node in graph.node:
        for attribute in node.attribute:
            tensors = [attribute.t, *attribute.tensors] if attribute.HasField("t") else list(attribute.tensors)
            yield from (t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from external_tensors(subgraph)


def _location(tensor: onnx.TensorProto) -> str:
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), "")


def _confined(location: str, folder: Path, tensor_name: str) -> Path:
    relative = PurePosixPath(location.replace("\\", "/"))
    if not location or relative.is_absolute() or ".." in relative.parts:
        raise AuditError("external_data_unsafe",
                         f"initializer '{tensor_name}' points outside the archive: {location!r}")
    target = folder / relative
    if target.is_symlink() or not target.resolve().is_relative_to(folder.resolve()):
        raise AuditError("external_data_unsafe", f"initializer '{tensor_name}' points through a link: {location!r}")
    if not target.is_file():
        raise AuditError("external_data_missing",
                         f"initializer '{tensor_name}' needs the file '{location}', which the archive does not hold")
    return target


def attach_external_data(proto: onnx.ModelProto, folder: Path | None) -> None:
    """Load external tensors from `folder` (None: a bare .onnx upload, so refuse them)."""
    tensors = list(external_tensors(proto.graph))
    if not tensors:
        return
    if folder is None:
        raise AuditError(
            "external_data_missing",
            f"initializer '{tensors[0].name}' references the external weight file '{_location(tensors[0])}'; "
            "upload a .zip or .tar archive holding the .onnx file and its data files",
        )
    for tensor in tensors:
        _confined(_location(tensor), folder, tensor.name)
    onnx.external_data_helper.load_external_data_for_model(proto, str(folder))
