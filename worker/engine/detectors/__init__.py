"""Detectors, one module per finding family; each reads a Context and returns findings without advice."""

from __future__ import annotations

from worker.engine.detectors.common import Context
from worker.engine.detectors.facts import NetworkFacts, network_facts

__all__ = ["Context", "NetworkFacts", "network_facts"]
