"""Which patched network a download names, read from a report's parts: the first recommendation with a code (within
one finding, when asked) or the combined patch; and where none was kept, why, in words the caller can act on.

Plain Python: the API reads it; the worker wrote what it reads (worker/remedies, worker/runner.py store_fixes).
"""

from __future__ import annotations

import re
from typing import Any

from gradaudit.schema import PatchedNetwork

COMBINED = "combined"  # the code that names the combined patch
_SHA256 = re.compile(r"[0-9a-f]{64}")


class NoPatchedNetwork(LookupError):
    """No patched network was kept under that name; the message says why."""


def patched_network(*, findings: list[dict] | None, combined: dict | None, setup: dict | None, code: str,
                    finding: str | None = None) -> PatchedNetwork:
    """The kept network ({sha256, size, format}) of the combined patch (code `combined`) or of the first
    recommendation with `code` in report order, within the finding coded `finding` when one is given."""
    if code == COMBINED:
        if combined is None:
            raise NoPatchedNetwork(f"there is no combined patch: {_why_no_combined(setup)}")
        return _kept(combined, "the combined patch", setup)
    recommendation, owner = _recommendation(findings or [], code, finding)
    return _kept(recommendation, f"recommendation {code!r} of finding {owner!r}", setup)


def _recommendation(findings: list[dict], code: str, finding: str | None) -> tuple[dict, str]:
    searched = [entry for entry in findings if finding is None or entry.get("code") == finding]
    if finding is not None and not searched:
        raise NoPatchedNetwork(f"the report has no finding {finding!r}")
    for entry in searched:
        for recommendation in entry.get("recommendations") or []:
            if recommendation.get("code") == code:
                return recommendation, entry["code"]
    where = f"finding {finding!r}" if finding is not None else "any finding"
    raise NoPatchedNetwork(f"no recommendation {code!r} in {where} of the report")


def _kept(entry: dict, what: str, setup: dict | None) -> PatchedNetwork:
    network = entry.get("network") or {}
    if isinstance(network.get("sha256"), str) and _SHA256.fullmatch(network["sha256"]):
        return network
    verification = entry.get("verification")
    if verification is None:
        raise NoPatchedNetwork(f"{what} was not verified: {_why_unverified(setup)}")
    if verification.get("reason"):
        raise NoPatchedNetwork(f"{what} has no patched network: {verification['reason']}")
    if entry.get("patch") is None:
        # clip_gradients: it changes how the network is trained, and is verified by training with and without it.
        raise NoPatchedNetwork(f"{what} changes training, not the network: it was verified "
                               f"({verification.get('status')}) by training, without a patched copy")
    raise NoPatchedNetwork(f"{what} was verified ({verification.get('status')}) but its patched network was not kept")


def _why_unverified(setup: dict | None) -> str:
    remedies = _remedies(setup)
    if remedies is None:
        return "the audit ran before recommendations were verified"
    return remedies.get("reason") or "no verification was recorded for it"


def _why_no_combined(setup: dict | None) -> str:
    remedies = _remedies(setup)
    if remedies is None or not remedies.get("verified"):
        return f"the recommendations were not verified ({_why_unverified(setup)})"
    return "no recommendation's patch resolved or improved its finding"


def _remedies(setup: dict | None) -> dict[str, Any] | None:
    remedies = (setup or {}).get("remedies")
    return remedies if isinstance(remedies, dict) else None
