"""Audits for tests of the worker's runner: a network scripted into the context's store and queued as the API
queues it, and the rows the runner left."""

from __future__ import annotations

import io

import torch
from torch import nn

from gradaudit.options import AuditOptions
from models import audits as audit_rows


def queued_torchscript(context, network: nn.Module, options: AuditOptions) -> str:
    """The network scripted and kept in the context's store, and a queued audit of it with these options; its id."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(network), buffer)
    buffer.seek(0)
    artifact = context.store.save(buffer, max_bytes=10**7)
    with context.sessions() as db_session:
        return audit_rows.create_audit(
            db_session=db_session, artifact_sha256=artifact.sha256, artifact_format="torchscript",
            artifact_size=artifact.size, options=options.model_dump()).id


def audit_and_layers(context, audit_id: str):
    """The audit's row and its layer rows as dicts, as the database holds them now."""
    with context.sessions() as db_session:
        audit = audit_rows.get_audit(db_session=db_session, audit_id=audit_id)
        return audit, [layer.as_dict() for layer in audit_rows.list_layers(db_session=db_session, audit_id=audit_id)]
