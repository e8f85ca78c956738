"""An audit's outcome as JSON for the pipe (never pickle: the parent must not run what the child wrote), and
back; the sandbox's limits go into the report's setup."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gradaudit.errors import AuditError
from gradaudit.schema import PHASES, LayerRecord
from worker.sandbox.outcome import error_payload, is_allocation_failure, memory_exceeded
from worker.sandbox.policy import SandboxPolicy

if TYPE_CHECKING:
    from worker.engine.audit import EngineResult

# Engine failures that are really the memory limit refusing an allocation (torch reports it as a RuntimeError).
_MEMORY_MASKED = {"forward_failed", "backward_failed", "internal_error", "out_of_memory", "conversion_failed"}


def encode_outcome(outcome: EngineResult | AuditError, policy: SandboxPolicy) -> dict[str, Any]:
    """In the child: the outcome as plain data."""
    if isinstance(outcome, AuditError):
        if outcome.code in _MEMORY_MASKED and is_allocation_failure(outcome.detail):
            return memory_exceeded(policy, outcome.detail)
        return error_payload(outcome.code, outcome.detail)
    result = {"network": outcome.network, "setup": outcome.setup, "findings": outcome.findings,
              "verdict": outcome.verdict, "layers": [layer.as_dict() for layer in outcome.layers],
              "combined": outcome.combined, "fixes": outcome.fixes}
    return {"result": result}


def decode_answer(answer: dict[str, Any], policy: SandboxPolicy) -> EngineResult | AuditError:
    """In the parent: the child's answer as the engine's result (setup naming the limits), or a coded failure."""
    from worker.engine.audit import EngineResult  # the parent has the engine loaded already

    if "result" not in answer:
        error = answer.get("error") or {}
        return AuditError(str(error.get("code", "audit_crashed")), str(error.get("detail", "no detail")))
    result = answer["result"]
    setup = {**result["setup"], "time_limit_s": policy.time_limit_s, "memory_limit_mb": policy.memory_bytes >> 20,
             "sandbox": list(answer.get("sandbox", []))}
    if "phase_seconds" in setup:
        setup["phase_seconds"] = _phase_seconds(setup["phase_seconds"])
    return EngineResult(network=result["network"], setup=setup, findings=result["findings"],
                        verdict=result["verdict"], layers=[LayerRecord(**layer) for layer in result["layers"]],
                        combined=result.get("combined"), fixes=_fixes(result.get("fixes")))


def _phase_seconds(seconds: Any) -> dict[str, float]:
    """The child's seconds per phase, known phases and plain non-negative numbers only (metrics read them)."""
    if not isinstance(seconds, dict):
        return {}
    return {phase: float(value) for phase, value in seconds.items() if phase in PHASES
            and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0}


def _fixes(fixes: Any) -> dict[str, str]:
    """The child's patched files as key -> relative path; anything else it wrote there is dropped."""
    if not isinstance(fixes, dict):
        return {}
    return {str(key): str(path) for key, path in fixes.items() if isinstance(path, str)}
