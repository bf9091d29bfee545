"""The step timeline service."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from media_jobs.models import MediaJobEvent
from media_jobs.selectors.jobs import job_timeline
from media_jobs.services.events import event_record
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_event_record_appends_to_the_timeline_in_order() -> None:
    job = JobFactory()
    first = event_record(job=job, step="validate", kind="started")
    second = event_record(
        job=job,
        step="validate",
        kind="succeeded",
        duration_ms=12.6,
        detail={"at": datetime(2025, 1, 1, tzinfo=UTC), "keys": ["a"]},
    )
    assert list(job_timeline(job=job)) == [first, second]
    second.refresh_from_db()
    assert (second.step, second.kind, second.duration_ms) == ("validate", "succeeded", 13)
    assert second.detail == {"at": "2025-01-01 00:00:00+00:00", "keys": ["a"]}


def test_durations_are_clamped_to_the_column() -> None:
    job = JobFactory()
    assert event_record(job=job, step="x", kind="note", duration_ms=-5).duration_ms == 0
    assert event_record(job=job, step="x", kind="note", duration_ms=10**12).duration_ms == 2**32 - 1


def test_unknown_kind_is_refused_and_long_steps_are_cut() -> None:
    job = JobFactory()
    with pytest.raises(ValueError, match="unknown event kind"):
        event_record(job=job, step="x", kind="exploded")
    event = event_record(job=job, step="s" * 100, kind="note")
    assert len(MediaJobEvent.objects.get(pk=event.pk).step) == 64


def test_a_detail_with_a_lone_surrogate_is_kept_with_a_question_mark() -> None:
    """A file name read from a non-UTF-8 archive (surrogateescape) has a lone surrogate:
    legal in a JSON escape, refused by MariaDB's JSON check - it is stored as "?", and
    other non-ASCII text as it is."""
    job = JobFactory()
    name = b"IMG_\xff.jpg".decode("utf-8", "surrogateescape")
    event = event_record(
        job=job, step="unzip", kind="note", detail={"file": name, "title": "Café 東京"}
    )
    stored = MediaJobEvent.objects.get(pk=event.pk)
    assert stored.detail == {"file": "IMG_?.jpg", "title": "Café 東京"}
    assert list(job_timeline(job=job)) == [event]
