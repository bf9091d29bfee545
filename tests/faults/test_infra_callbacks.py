"""The TOQ backend (the callback target) down for two minutes while jobs finish: when it is
back it gets each result once, in order, without an operator."""

from __future__ import annotations

import json
import time

import pytest

from media_jobs.models import CallbackOutbox, JobStatus, MediaProcessingJob, OutboxState
from media_jobs.services.dispatch import listing_start_finalization, listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.faults.infra import Stopwatch, report, wait_terminal
from tests.fixtures.faults import FAULT_ENV, RECOVERY_TIMEOUT_S, FaultProxy
from tests.fixtures.worker import wait_until
from tests.support.callback_receiver import CallbackReceiver
from tests.workers.listing import seed_listing

pytestmark = [pytest.mark.fault, pytest.mark.worker, pytest.mark.slow]

OUTAGE_S = 120
CALLBACK_PATH = "/api/v2/listings/media/callback"


def test_callback_target_down_for_two_minutes(
    celery_worker, celery_beat, moto_server, s3_bucket, settings
) -> None:
    backend = CallbackReceiver().start()
    proxy = FaultProxy(backend.url.removesuffix(CALLBACK_PATH)).start()
    try:
        proxy.outage(True)
        outage = Stopwatch()
        settings.CALLBACK_URL = proxy.url + CALLBACK_PATH
        storage = pipeline_storage()
        seed_listing(storage, 6401, photos=3)
        seed_listing(storage, 6402, photos=2)
        celery_worker.start(extra_env=FAULT_ENV)
        celery_beat.start(extra_env=FAULT_ENV)

        first = listing_start_processing(listing_identity_id=6401)
        second = listing_start_processing(listing_identity_id=6402)
        for job in (first, second):
            assert wait_terminal(job.pk).status == JobStatus.SUCCEEDED
        # The portal applied the results, so the listing can be finalized meanwhile.
        final = listing_start_finalization(listing_identity_id=6401)
        assert wait_terminal(final.pk).status == JobStatus.SUCCEEDED

        time.sleep(max(0.0, OUTAGE_S - outage()))
        entries = list(CallbackOutbox.objects.order_by("id"))
        assert len(entries) == 3 and {e.state for e in entries} == {OutboxState.PENDING}
        attempts_during_outage = sum(e.attempts for e in entries)
        # The oldest result kept probing well past the contract's 4 attempts; nothing arrived.
        assert entries[0].attempts > settings.CALLBACK_MAX_ATTEMPTS
        assert backend.received == []

        proxy.outage(False)
        cleared = Stopwatch()
        wait_until(
            lambda: not CallbackOutbox.objects.exclude(state=OutboxState.DELIVERED).exists(),
            timeout=RECOVERY_TIMEOUT_S,
            interval=0.2,
            what="every result delivered",
        )
        recovered = cleared()
        time.sleep(3)  # a duplicate would arrive within the drain interval: none may
        received = [json.loads(r.body)["jobId"] for r in backend.received]
        assert received == [e.job_id for e in entries]  # each once, in the order produced
        assert received.index(first.pk) < received.index(final.pk)
        for callback in backend.received:
            job = MediaProcessingJob.objects.get(pk=json.loads(callback.body)["jobId"])
            assert callback.body.decode() == job.callback_body
        report(
            "callback target down 2 min",
            delivered_after_back=recovered,
            attempts_during_outage=attempts_during_outage,
        )
    finally:
        proxy.stop()
        backend.stop()
