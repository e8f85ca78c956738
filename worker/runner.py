"""One audit, start to finish: claim the row, run the engine with no session open, store the result."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded

from gradaudit.archives import ArchiveRefused, opened_network, remove_tree
from gradaudit.errors import AuditError, one_line
from gradaudit.options import AuditOptions
from gradaudit.settings import Settings
from models import audits as audit_rows
from models.audits import Claim
from worker.context import WorkerContext, owner_is_dead, worker_id
from worker.engine import progress as engine_progress  # torch-free: phases only
from worker.heartbeat import Heartbeat
from worker.progress import ProgressWriter
from worker.sandbox.child import run_in_child
from worker.sandbox.codec import decode_answer, encode_outcome
from worker.sandbox.outcome import is_allocation_failure
from worker.sandbox.policy import policy_for
from worker.sandbox.progress import OnProgress, ProgressChannel

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from worker.engine.audit import EngineResult  # torch: imported by the engine, not by the runner

RunEngine = Callable[..., "EngineResult"]
KeepFixes = Callable[["EngineResult", dict[str, Path]], None]


def execute_audit(audit_id: str, *, context: WorkerContext, run_engine: RunEngine) -> Claim:
    """Run the audit if this worker may; return what the claim decided."""
    owner = worker_id()
    with context.sessions() as db_session:
        claim = _claim(db_session, audit_id, owner, context)
        if claim is not Claim.CLAIMED:
            log.info("audit %s not run here: %s", audit_id, claim.value)
            return claim
        job = _job(audit_id, context, db_session)
    # The session is closed: an audit can take minutes and must not hold a connection.
    with Heartbeat(context, audit_id, owner), ProgressWriter(context, audit_id, owner) as progress:
        outcome = _run(job, run_engine, context, audit_id, progress.offer)
    try:
        _store(context, audit_id, owner, outcome)
    except Exception:
        # A report the database refuses must not look like a dead worker and be retried forever.
        log.exception("storing the result of audit %s failed", audit_id)
        _store(context, audit_id, owner, AuditError("internal_error", "storing the audit's report failed; logged"))
    return claim


def _claim(db_session, audit_id: str, owner: str, context: WorkerContext) -> Claim:
    settings = context.settings
    return audit_rows.claim_audit(
        db_session=db_session, audit_id=audit_id, worker_id=owner,
        stale_after=timedelta(seconds=settings.stale_after_s), max_attempts=settings.max_attempts,
        owner_is_dead=owner_is_dead,
    )


def _job(audit_id: str, context: WorkerContext, db_session) -> dict:
    audit = audit_rows.get_audit(db_session=db_session, audit_id=audit_id)
    inputs = context.store.path_for(audit.inputs_sha256) if audit.inputs_sha256 else None
    return dict(path=context.store.path_for(audit.artifact_sha256), network_format=audit.artifact_format,
                options=AuditOptions.model_validate(audit.options), inputs_path=inputs)


def _run(job: dict, run_engine: RunEngine, context: WorkerContext, audit_id: str,
         on_progress: OnProgress) -> EngineResult | AuditError:
    settings = context.settings
    return run_artifact(job["path"], job["network_format"], options=job["options"], inputs_path=job["inputs_path"],
                        settings=settings, work_dir=settings.work_dir_for(audit_id), run_engine=run_engine,
                        keep_fixes=partial(store_fixes, context.store), on_progress=on_progress)


def store_fixes(store, result: EngineResult, files: dict[str, Path]) -> None:
    """Keep each patched network in the artifact store and name it in the report: the recommendation it patches
    (key "finding/code") or the combined patch gets `network` {sha256, size, format}."""
    stored = {}
    for key, path in files.items():
        with path.open("rb") as stream:
            artifact = store.save(stream, max_bytes=path.stat().st_size + 1)
        stored[key] = {"sha256": artifact.sha256, "size": artifact.size, "format": "onnx"}
    for finding in result.findings:
        for recommendation in finding["recommendations"]:
            key = f"{finding['code']}/{recommendation['code']}"
            if key in stored:
                recommendation["network"] = stored[key]
    if result.combined is not None and "combined" in stored:
        result.combined["network"] = stored["combined"]


def run_artifact(path: Path, network_format: str, *, options: AuditOptions, inputs_path: Path | None,
                 settings: Settings, work_dir: Path, run_engine: RunEngine,
                 data_dir: Path | None = None, drop_user: bool = True,
                 keep_fixes: KeepFixes | None = None,
                 on_progress: OnProgress | None = None) -> EngineResult | AuditError:
    """Open a stored artifact (extracting an archive under work_dir) and run the engine on it in a sandboxed
    child process (worker/sandbox); every failure comes back as an AuditError with a stable code, never as an
    exception. The worker and `gradaudit audit` both run audits through here. data_dir: where a bare ONNX
    file's external data may be read (confined to it); the worker gives none, as its store keeps each upload
    alone. drop_user: run as GRADAUDIT_SANDBOX_USER when root (the worker; not a local command on one's files).
    keep_fixes: given the patched networks the child wrote (key -> file in its scratch folder), keeps them before
    that folder is removed; without it they go with the folder. on_progress(phase, progress): told where the
    audit is as it runs (from the sandbox's thread: it must not block). Either way the report's setup gets the
    seconds spent in each phase."""
    if not Path(path).exists():
        return AuditError("artifact_missing", "the uploaded file is no longer in the artifact store")
    preload_engine()
    reads = [Path(path), *([Path(inputs_path)] if inputs_path else [])]
    policy = policy_for(settings, work_dir, [*reads, data_dir], drop_user=drop_user)
    channel = ProgressChannel(on_progress) if on_progress is not None else None

    def work(seen: tuple[Path, ...]) -> dict:
        # Paths inside the scratch folder are relative: the sandbox user may not cross the folders above it.
        seen_inputs = seen[1] if inputs_path else None
        with engine_progress.reporting(channel.send if channel else None) as phases:
            outcome = _run_here(seen[0], network_format, options=options, inputs_path=seen_inputs, settings=settings,
                                work_dir=Path("network"), run_engine=run_engine, data_dir=data_dir)
        return encode_outcome(_with_phase_seconds(outcome, phases.seconds()), policy)

    try:
        outcome = decode_answer(run_in_child(work, policy, progress=channel), policy)
        if keep_fixes is not None and not isinstance(outcome, AuditError) and outcome.fixes:
            keep_fixes(outcome, written_fixes(outcome.fixes, policy.scratch))
        return outcome
    except SoftTimeLimitExceeded:
        return AuditError("time_limit_exceeded", "the audit ran past GRADAUDIT_SOFT_TIME_LIMIT_S; its process was killed")
    finally:
        remove_tree(policy.scratch)


def _with_phase_seconds(outcome: EngineResult | AuditError, seconds: dict[str, float]) -> EngineResult | AuditError:
    if isinstance(outcome, AuditError):
        return outcome
    return replace(outcome, setup={**outcome.setup, "phase_seconds": seconds})


def written_fixes(fixes: dict[str, str], scratch: Path) -> dict[str, Path]:
    """The patched networks the child named, as files in its scratch folder: plain files only, inside it (the
    child is untrusted; a link or a path outside is dropped)."""
    kept = {}
    root = scratch.resolve()
    for key, relative in fixes.items():
        candidate = scratch / relative
        if candidate.is_symlink() or not candidate.is_file():
            continue
        if root not in candidate.resolve().parents:
            continue
        kept[key] = candidate
    return kept


@lru_cache(maxsize=1)
def preload_engine(threads: int | None = None) -> None:
    """Import the engine and every format adapter once in this process, so each audit's child starts warm (a
    fork). The worker calls it as each pool process starts, before any time limit runs, with its share of the
    CPUs (`threads`; None keeps torch's default), which each audit's child inherits."""
    import encodings
    import importlib
    import pkgutil

    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    for adapter in ("worker.engine.audit", "worker.engine.onnx", "worker.engine.torchscript", "worker.engine.pt2"):
        importlib.import_module(adapter)
    # Codecs load on first use (zip member names are cp437); the sandbox user may not read the interpreter's
    # own folder (a Python under /root), so they load here.
    for codec in pkgutil.iter_modules(encodings.__path__):
        try:
            importlib.import_module(f"encodings.{codec.name}")
        except ImportError:
            continue  # another platform's codec (mbcs, oem)


def _run_here(path: Path, network_format: str, *, options: AuditOptions, inputs_path: Path | None,
              settings: Settings, work_dir: Path, run_engine: RunEngine,
              data_dir: Path | None) -> EngineResult | AuditError:
    try:
        with opened_network(path, network_format, work_dir,
                            max_total_bytes=settings.max_extracted_bytes) as (network_path, opened_format, extracted):
            return run_engine(network_path, options=options, device=settings.device, inputs_path=inputs_path,
                              network_format=opened_format, external_data_dir=extracted or data_dir)
    except ArchiveRefused as refused:
        return AuditError(refused.code, refused.detail)
    except AuditError as refused:
        return refused
    except MemoryError:
        return AuditError("resource_limit_exceeded", "the network did not fit in the audit's memory limit "
                          "(GRADAUDIT_AUDIT_MEMORY_MB)")
    except Exception as crash:
        if is_allocation_failure(str(crash)):
            return AuditError("resource_limit_exceeded", f"the audit's memory limit (GRADAUDIT_AUDIT_MEMORY_MB) "
                              f"refused an allocation: {one_line(crash)}")
        log.exception("engine crashed on %s", path)
        return AuditError("internal_error", "the audit engine hit an unexpected error; it has been logged")


def _store(context: WorkerContext, audit_id: str, owner: str, outcome: EngineResult | AuditError) -> None:
    with context.sessions() as db_session:
        if isinstance(outcome, AuditError):
            stored = audit_rows.fail_audit(db_session=db_session, audit_id=audit_id, code=outcome.code,
                                           detail=outcome.detail, worker_id=owner)
        else:
            stored = audit_rows.succeed_audit(db_session=db_session, audit_id=audit_id, worker_id=owner,
                                              result=_result_fields(outcome),
                                              layers=[layer.as_dict() for layer in outcome.layers])
    if not stored:
        log.warning("audit %s was taken over by another worker; result dropped", audit_id)


def _result_fields(result: EngineResult) -> dict:
    return dict(network=result.network, setup=result.setup, findings=result.findings, verdict=result.verdict,
                combined=result.combined)
