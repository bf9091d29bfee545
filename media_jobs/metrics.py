"""``/metrics``: Prometheus text, computed from the database at scrape time.

The web process, the workers and beat are separate processes (often separate machines), so
in-process counters would each see a slice. Every figure here is a query over indexed
ranges instead - the same answer whichever web process is scraped:

- ``toq_media_jobs_active{status,provider}``: PENDING/RUNNING jobs (status index);
- ``toq_media_jobs_stuck``: of those, older than RECONCILER_TIMEOUT_SECONDS;
- ``toq_media_jobs_recent{status,provider}``: jobs created in the last 24 h (created_at index);
- ``toq_media_job_failures_recent{error_code}``: FAILED/PARTIAL_SUCCESS jobs completed in
  the last 24 h, by each code they ended with: their own and their assets' (a job with a
  corrupt photo counts under DERIVATIVE_ERRORS_DETECTED and CORRUPT_IMAGE);
- ``toq_media_asset_failures_recent{error_code}``: of those, the assets that failed, by code;
- ``toq_media_step_duration_seconds{step,kind}``: a histogram of the Celery engine's step
  durations over the last hour (a sliding window: use ``histogram_quantile`` on the
  buckets directly, not on ``rate()``);
- ``toq_media_callbacks_sent_recent{outcome}``: delivery attempts to CALLBACK_URL in 24 h;
- ``toq_media_callbacks_received_recent{kind}``: callbacks applied by the receiver in 24 h;
- ``toq_media_callbacks_undelivered{state}``: results in the callback outbox the backend has
  not accepted - ``pending`` (still retried: alert when it stays above 0) and ``expired``
  (retries over: replay them) - (state index);
- ``toq_media_queue_depth{queue}``: messages waiting in the Celery queue, when the broker
  can tell (Redis, the filesystem broker, RabbitMQ); absent otherwise.

Access: a staff session, or ``Authorization: Bearer <METRICS_TOKEN>``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from toqportal.celery import app

from . import errorcodes
from .models import (
    ACTIVE_JOB_STATUSES,
    CallbackDelivery,
    CallbackOutbox,
    EventKind,
    MediaJobEvent,
    MediaProcessingJob,
)
from .selectors.deliveries import UNDELIVERED_STATES
from .selectors.errors import failures_by_code
from .selectors.jobs import job_list_stuck
from .services.broker import queue_depth

logger = logging.getLogger("toq.media.metrics")

RECENT = timedelta(hours=24)
DURATION_WINDOW = timedelta(hours=1)
DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def error_code_of(last_error: str | None) -> str:
    """The metric label of a last_error: its first line's code (``errorcodes``' one parser),
    ``none`` without an error, ``unknown`` for an error without a code."""
    if not last_error:
        return "none"
    return errorcodes.error_code_of(last_error) or "unknown"


class DatabaseCollector(Collector):
    """Collects every metric with a handful of indexed queries per scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._jobs(now)
        yield from self._failures(now)
        yield self._durations(now)
        yield from self._callbacks(now)
        depth = queue_depth()
        if depth is not None:
            gauge = GaugeMetricFamily(
                "toq_media_queue_depth", "Messages waiting in the Celery queue.", labels=["queue"]
            )
            gauge.add_metric([app.conf.task_default_queue], depth)
            yield gauge

    def _jobs(self, now: Any) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "toq_media_jobs_active", "PENDING or RUNNING jobs.", labels=["status", "provider"]
        )
        rows = (
            MediaProcessingJob.objects.filter(status__in=ACTIVE_JOB_STATUSES)
            .values("status", "provider")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            active.add_metric([row["status"], row["provider"]], row["n"])
        yield active

        stuck = job_list_stuck(timeout_seconds=settings.RECONCILER_TIMEOUT_SECONDS, now=now).count()
        yield GaugeMetricFamily(
            "toq_media_jobs_stuck",
            "PENDING/RUNNING jobs older than RECONCILER_TIMEOUT_SECONDS.",
            value=stuck,
        )

        recent = GaugeMetricFamily(
            "toq_media_jobs_recent", "Jobs created in the last 24 h.", labels=["status", "provider"]
        )
        rows = (
            MediaProcessingJob.objects.filter(created_at__gte=now - RECENT)
            .values("status", "provider")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            recent.add_metric([row["status"], row["provider"]], row["n"])
        yield recent

    def _failures(self, now: Any) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "toq_media_job_failures_recent",
            "FAILED or PARTIAL_SUCCESS jobs completed in the last 24 h, by each error code "
            "they ended with (their own and their assets').",
            labels=["error_code"],
        )
        assets = GaugeMetricFamily(
            "toq_media_asset_failures_recent",
            "Assets that failed in jobs completed in the last 24 h, by error code.",
            labels=["error_code"],
        )
        counts = failures_by_code(completed_since=now - RECENT)
        for code, count in sorted(counts.items()):
            jobs.add_metric([code or "unknown"], count.jobs)
            if count.assets:
                assets.add_metric([code or "unknown"], count.assets)
        yield jobs
        yield assets

    def _durations(self, now: Any) -> Metric:
        histogram = HistogramMetricFamily(
            "toq_media_step_duration_seconds",
            "Celery engine step durations over the last hour (sliding window).",
            labels=["step", "kind"],
        )
        bucket_aggregates = {
            f"le_{i}": Count("id", filter=Q(duration_ms__lte=bound * 1000))
            for i, bound in enumerate(DURATION_BUCKETS_S)
        }
        rows = (
            MediaJobEvent.objects.filter(
                at__gte=now - DURATION_WINDOW,
                duration_ms__isnull=False,
                kind__in=[EventKind.SUCCEEDED, EventKind.FAILED],
            )
            .values("step", "kind")
            .annotate(total=Count("id"), total_ms=Sum("duration_ms"), **bucket_aggregates)
            .order_by()
        )
        for row in rows:
            counts: Mapping[str, Any] = row  # with the le_<i> keys of bucket_aggregates
            buckets = [
                (floatToGoString(bound), counts[f"le_{i}"])
                for i, bound in enumerate(DURATION_BUCKETS_S)
            ] + [("+Inf", row["total"])]
            histogram.add_metric(
                [row["step"], row["kind"]], buckets, sum_value=(row["total_ms"] or 0) / 1000
            )
        return histogram

    def _callbacks(self, now: Any) -> Iterator[Metric]:
        sent = GaugeMetricFamily(
            "toq_media_callbacks_sent_recent",
            "Callback delivery attempts to CALLBACK_URL in the last 24 h.",
            labels=["outcome"],
        )
        rows = (
            CallbackDelivery.objects.filter(created_at__gte=now - RECENT)
            .values("succeeded")
            .annotate(n=Count("id"))
            .order_by()
        )
        by_outcome = {"sent": 0, "failed": 0}
        for row in rows:
            by_outcome["sent" if row["succeeded"] else "failed"] += row["n"]
        for outcome, n in by_outcome.items():
            sent.add_metric([outcome], n)
        yield sent

        received = GaugeMetricFamily(
            "toq_media_callbacks_received_recent",
            "Callbacks handled by the receiver (HTTP and Celery) in the last 24 h, by outcome.",
            labels=["kind"],
        )
        received_rows = (
            MediaJobEvent.objects.filter(at__gte=now - RECENT, step="callback")
            .values("kind")
            .annotate(n=Count("id"))
            .order_by()
        )
        for received_row in received_rows:
            received.add_metric([received_row["kind"]], received_row["n"])
        yield received

        undelivered = GaugeMetricFamily(
            "toq_media_callbacks_undelivered",
            "Results in the callback outbox the backend has not accepted, by state.",
            labels=["state"],
        )
        counts = dict(
            CallbackOutbox.objects.filter(state__in=UNDELIVERED_STATES)
            .values("state")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("state", "n")
        )
        for state in UNDELIVERED_STATES:
            undelivered.add_metric([str(state)], counts.get(state, 0))
        yield undelivered


def render_metrics() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def _allowed(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = getattr(settings, "METRICS_TOKEN", "")
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics for Prometheus: staff session or ``Authorization: Bearer METRICS_TOKEN``."""
    if not _allowed(request):
        response = HttpResponse(
            "metrics need a staff session or 'Authorization: Bearer <METRICS_TOKEN>'\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
