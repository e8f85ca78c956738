"""GET /metrics: Prometheus metrics, read from the database and the broker when scraped, so every API process
answers alike whichever worker ran the audits (no shared in-process counters to lose or to merge).

gradaudit_audits{status,error_code}, gradaudit_webhook_deliveries{status}: rows in the database now.
gradaudit_audit_duration_seconds{phase}: a histogram of every finished audit this process has read (each once): its
  wall-clock time as phase "total", and its setup.phase_seconds where the worker recorded them.
gradaudit_queue_depth{queue}, gradaudit_workers_live, gradaudit_broker_up: from Redis.
"""

from __future__ import annotations

import hmac
import logging
import threading
from bisect import bisect_left
from datetime import datetime, timedelta

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func, select

from api.auth import CHALLENGE
from api.problems import problem
from api.services import Services, services
from gradaudit.errors import one_line
from gradaudit.queue import live_workers, queue_depths
from models.audits import FAILED, QUEUED, RUNNING, SUCCEEDED
from models.tables import Audit, WebhookDelivery, as_utc
from models.webhooks import DELIVERED, REFUSED
from models.webhooks import FAILED as FAILED_DELIVERY

metrics = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)

DURATION_BUCKETS_S = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)
# Audits are read again this far behind the newest finish seen: a row committed late is still counted, once.
_OVERLAP = timedelta(minutes=10)


@metrics.get("/metrics")
def prometheus_metrics():
    """The metrics in Prometheus' text format."""
    _check_token()
    registry = current_app.extensions.get("gradaudit.metrics")
    if registry is None:
        registry = current_app.extensions["gradaudit.metrics"] = CollectorRegistry(auto_describe=False)
        registry.register(GradauditCollector(services()))
    # Prometheus asks for the format it reads best in Accept: the text format 0.0.4 by default, or OpenMetrics.
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    return Response(encode(registry), content_type=content_type)


def _check_token() -> None:
    token = services().settings.metrics_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise problem("unauthorized", "send GRADAUDIT_METRICS_TOKEN as 'Authorization: Bearer <token>'",
                      headers=CHALLENGE)


class GradauditCollector:
    """A prometheus_client collector reading the database and the broker at each scrape."""

    def __init__(self, app_services: Services):
        self._services = app_services
        self._durations = Durations()

    def collect(self):
        """The metric families, fresh."""
        with self._services.sessions() as db_session:
            yield _audit_counts(db_session)
            yield _delivery_counts(db_session)
            yield self._durations.family(db_session)
        yield from _broker_families(self._services.celery)


def _audit_counts(db_session) -> GaugeMetricFamily:
    family = GaugeMetricFamily("gradaudit_audits", "Audits in the database by status and error code (empty unless "
                               "failed)", labels=["status", "error_code"])
    # Statuses that carry no error code are always there, at 0 when empty, so a series never appears from nowhere.
    counts = {(status, ""): 0 for status in (QUEUED, RUNNING, SUCCEEDED)}
    query = select(Audit.status, Audit.error_code, func.count()).group_by(Audit.status, Audit.error_code)
    counts.update({(status, error_code or ""): count for status, error_code, count in db_session.execute(query)})
    for labels, count in counts.items():
        family.add_metric(list(labels), count)
    return family


def _delivery_counts(db_session) -> GaugeMetricFamily:
    family = GaugeMetricFamily("gradaudit_webhook_deliveries", "Webhook delivery attempts by outcome",
                               labels=["status"])
    counts = dict.fromkeys((DELIVERED, FAILED_DELIVERY, REFUSED), 0)
    query = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    counts.update({status: count for status, count in db_session.execute(query)})
    for status, count in counts.items():
        family.add_metric([status], count)
    return family


def _broker_families(celery):
    up = GaugeMetricFamily("gradaudit_broker_up", "Whether the broker answered this scrape")
    try:
        depths, workers = queue_depths(celery), live_workers(celery)
    except Exception as failed:
        log.warning("the broker did not answer a /metrics scrape: %s", one_line(failed))
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    depth = GaugeMetricFamily("gradaudit_queue_depth", "Messages waiting in each queue", labels=["queue"])
    for queue, waiting in depths.items():
        depth.add_metric([queue], waiting)
    yield depth
    yield GaugeMetricFamily("gradaudit_workers_live", "Workers whose liveness key has not expired", value=workers)


class Durations:
    """Audit durations by phase, as a histogram: each finished audit observed once, read incrementally by finish
    time (the newest finish seen, less an overlap for rows committed late)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._seen: dict[str, datetime] = {}  # audit id -> finished_at, within the overlap
        self._newest: datetime | None = None

    def family(self, db_session) -> HistogramMetricFamily:
        """The histogram, after reading the audits that finished since the last scrape."""
        with self._lock:
            self._read(db_session)
            family = HistogramMetricFamily("gradaudit_audit_duration_seconds", "Wall-clock seconds of finished "
                                           "audits: phase total from start to finish, and each phase the worker "
                                           "timed", labels=["phase"])
            for phase in sorted(self._buckets):
                family.add_metric([phase], self._cumulative(phase), self._sums[phase])
            return family

    def _read(self, db_session) -> None:
        query = select(Audit.id, Audit.started_at, Audit.finished_at, Audit.setup["phase_seconds"]).where(
            Audit.status.in_((SUCCEEDED, FAILED)), Audit.finished_at.is_not(None))
        if self._newest is not None:
            query = query.where(Audit.finished_at >= self._newest - _OVERLAP)
        for audit_id, started_at, finished_at, phase_seconds in db_session.execute(query):
            if audit_id not in self._seen:
                self._observe_audit(as_utc(started_at) if started_at else None, as_utc(finished_at), phase_seconds)
                self._seen[audit_id] = as_utc(finished_at)
        if self._seen:
            self._newest = max(self._seen.values())
            self._seen = {key: at for key, at in self._seen.items() if at >= self._newest - _OVERLAP}

    def _observe_audit(self, started_at: datetime | None, finished_at: datetime, phase_seconds) -> None:
        if started_at is not None:
            self._observe("total", (finished_at - started_at).total_seconds())
        if isinstance(phase_seconds, dict):
            for phase, seconds in phase_seconds.items():
                if isinstance(seconds, (int, float)) and seconds >= 0:
                    self._observe(str(phase), float(seconds))

    def _observe(self, phase: str, seconds: float) -> None:
        buckets = self._buckets.setdefault(phase, [0] * (len(DURATION_BUCKETS_S) + 1))
        buckets[bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        self._sums[phase] = self._sums.get(phase, 0.0) + seconds

    def _cumulative(self, phase: str) -> list[tuple[str, int]]:
        bounds = [*(str(float(bound)) for bound in DURATION_BUCKETS_S), "+Inf"]
        running, cumulative = 0, []
        for bound, count in zip(bounds, self._buckets[phase]):
            running += count
            cumulative.append((bound, running))
        return cumulative
