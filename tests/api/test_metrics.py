"""GET /metrics: Prometheus text from the database, staff session or bearer token."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from media_jobs.metrics import error_code_of
from media_jobs.models import CallbackDelivery, CallbackOutbox, JobProvider, JobStatus
from media_jobs.services.events import event_record
from tests.factories import JobFactory
from toqportal.celery import app

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = "metrics-token"
    settings.RECONCILER_TIMEOUT_SECONDS = 3600
    return "metrics-token"


def scrape(client: Client, token: str) -> dict[str, list[Any]]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def value(samples: list[Any], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_metrics_from_the_database(client: Client, token: str) -> None:
    now = timezone.now()
    JobFactory.create_batch(2, status=JobStatus.RUNNING, started_at=now)
    JobFactory(status=JobStatus.RUNNING, started_at=now - timedelta(hours=3))  # stuck
    JobFactory(status=JobStatus.PENDING, provider=JobProvider.STEP_FUNCTIONS_FINALIZATION)
    JobFactory(
        status=JobStatus.FAILED, completed_at=now, last_error="code=VALIDATION_ERROR | x\nmore"
    )
    JobFactory(status=JobStatus.FAILED, completed_at=now, last_error="code=VALIDATION_ERROR | y")
    partial = JobFactory(
        status=JobStatus.PARTIAL_SUCCESS,
        completed_at=now,
        last_error="code=DERIVATIVE_ERRORS_DETECTED | z",
    )
    JobFactory(status=JobStatus.SUCCEEDED, completed_at=now)
    for duration in (40, 700, 3_000):
        event_record(job=partial, step="thumbnails", kind="succeeded", duration_ms=duration)
    event_record(job=partial, step="callback", kind="succeeded")
    CallbackDelivery.objects.create(
        job=partial, url="http://x", request_body="{}", signature="s", succeeded=True
    )
    CallbackDelivery.objects.create(
        job=partial, url="http://x", request_body="{}", signature="s", succeeded=False
    )
    for state in ("pending", "pending", "expired", "delivered"):
        CallbackOutbox.objects.create(
            job=partial,
            listing_identity_id=partial.listing_identity_id,
            body="{}",
            state=state,
            expires_at=timezone.now(),
        )

    metrics = scrape(client, token)
    active = metrics["toq_media_jobs_active"]
    assert value(active, "toq_media_jobs_active", status="RUNNING", provider="STEP_FUNCTIONS") == 3
    assert (
        value(
            active,
            "toq_media_jobs_active",
            status="PENDING",
            provider="STEP_FUNCTIONS_FINALIZATION",
        )
        == 1
    )
    assert value(metrics["toq_media_jobs_stuck"], "toq_media_jobs_stuck") == 1
    recent = metrics["toq_media_jobs_recent"]
    assert value(recent, "toq_media_jobs_recent", status="FAILED", provider="STEP_FUNCTIONS") == 2
    failures = metrics["toq_media_job_failures_recent"]
    assert value(failures, "toq_media_job_failures_recent", error_code="VALIDATION_ERROR") == 2
    assert (
        value(failures, "toq_media_job_failures_recent", error_code="DERIVATIVE_ERRORS_DETECTED")
        == 1
    )
    durations = metrics["toq_media_step_duration_seconds"]
    labels = {"step": "thumbnails", "kind": "succeeded"}
    assert value(durations, "toq_media_step_duration_seconds_bucket", le="0.1", **labels) == 1
    assert value(durations, "toq_media_step_duration_seconds_bucket", le="1.0", **labels) == 2
    assert value(durations, "toq_media_step_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert value(durations, "toq_media_step_duration_seconds_count", **labels) == 3
    assert value(durations, "toq_media_step_duration_seconds_sum", **labels) == pytest.approx(3.74)
    sent = metrics["toq_media_callbacks_sent_recent"]
    assert value(sent, "toq_media_callbacks_sent_recent", outcome="sent") == 1
    assert value(sent, "toq_media_callbacks_sent_recent", outcome="failed") == 1
    received = metrics["toq_media_callbacks_received_recent"]
    assert value(received, "toq_media_callbacks_received_recent", kind="succeeded") == 1
    undelivered = metrics["toq_media_callbacks_undelivered"]
    assert value(undelivered, "toq_media_callbacks_undelivered", state="pending") == 2
    assert value(undelivered, "toq_media_callbacks_undelivered", state="expired") == 1


def test_queue_depth_from_a_redis_broker(client: Client, token: str, settings: Any) -> None:

    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("no Redis (TEST_REDIS_URL)")
    queue = f"test-metrics-{uuid.uuid4().hex[:8]}"
    saved = app.conf.broker_url, app.conf.task_default_queue, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.task_default_queue = url, queue
    app.conf.broker_transport_options = {}
    client_redis = redis.Redis.from_url(url)
    try:
        client_redis.rpush(queue, b"{}", b"{}", b"{}")
        metrics = scrape(client, token)
        assert value(metrics["toq_media_queue_depth"], "toq_media_queue_depth", queue=queue) == 3
    finally:
        client_redis.delete(queue)
        app.conf.broker_url, app.conf.task_default_queue, app.conf.broker_transport_options = saved


def test_an_unreachable_broker_leaves_queue_depth_out(client: Client, token: str) -> None:

    saved = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        metrics = scrape(client, token)
    finally:
        app.conf.broker_url = saved
    assert "toq_media_queue_depth" not in metrics
    assert "toq_media_jobs_active" in metrics


def test_access_needs_a_staff_session_or_the_token(client: Client, token: str) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    user = get_user_model().objects.create_user("viewer", password="pw-123456789")
    client.force_login(user)
    assert client.get("/metrics").status_code == 401
    user.is_staff = True
    user.save()
    assert client.get("/metrics").status_code == 200


def test_no_configured_token_accepts_no_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


@pytest.mark.parametrize(
    ("last_error", "code"),
    [(None, "none"), ("", "none"), ("free text", "unknown"), ("code=ZIP_FAILED | x", "ZIP_FAILED")],
)
def test_error_code_of(last_error: str | None, code: str) -> None:
    assert error_code_of(last_error) == code
