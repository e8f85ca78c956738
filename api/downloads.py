"""Files the API hands back: a patched network streamed from the artifact store as an attachment."""

from __future__ import annotations

import logging
import os
import re
from pathlib import PurePosixPath

from flask import Response, send_file

from api.problems import problem
from api.services import services
from gradaudit.schema import PatchedNetwork

log = logging.getLogger(__name__)

# What an upload's name ends with that the download's name should not repeat.
_NETWORK_SUFFIXES = {".onnx", ".pt", ".pt2", ".pth", ".ts", ".zip", ".tar", ".gz", ".tgz"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 100


def network_download(network: PatchedNetwork, download_name: str) -> Response:
    """The kept network's bytes as an attachment, streamed from the store; 503 storage_unavailable where the store
    no longer holds them (an artifact volume the worker wrote to and the API does not see, a file removed)."""
    try:
        stream = services().store.open(network["sha256"])
    except OSError:
        log.warning("patched network %s is not readable in the artifact store", network["sha256"], exc_info=True)
        raise problem("storage_unavailable",
                      "the patched network is not in the artifact store the API reads; ask the operator") from None
    response = send_file(stream, mimetype="application/octet-stream", as_attachment=True,
                         download_name=download_name, conditional=False, etag=network["sha256"])
    response.content_length = os.fstat(stream.fileno()).st_size
    return response


def download_name(upload_filename: str | None, code: str) -> str:
    """`<upload stem>-<code>.onnx`, in characters safe in any header and file system."""
    name = PurePosixPath((upload_filename or "").replace("\\", "/")).name
    while PurePosixPath(name).suffix.lower() in _NETWORK_SUFFIXES:
        name = name[: -len(PurePosixPath(name).suffix)]
    stem = _UNSAFE.sub("_", name).strip("._")[:MAX_STEM] or "network"
    return f"{stem}-{_UNSAFE.sub('_', code)}.onnx"
