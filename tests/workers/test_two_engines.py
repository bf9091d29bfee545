"""One listing through both engines - the Celery workflow on a real worker, and the
processing state machine in the ASL interpreter with the real Lambda handlers - must give
the same callback body, apart from executionArn and startedAt, and the transcoder's own
words for a video it could not transcode (ffmpeg's on Celery, the failed MediaConvert
task's cause on AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from media_jobs.models import MediaProcessingJob
from media_jobs.pipeline.callback import SIGNATURE_HEADER, verify_signature
from media_jobs.selectors.dispatch import workflow_input
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.fixtures.worker import wait_until
from tests.support.asl import StateMachine
from tests.support.callback_receiver import CallbackReceiver
from tests.support.state_machines import PROCESSING, RESOURCES, set_lambda_environment
from tests.workers.listing import seed_listing

pytestmark = [pytest.mark.worker, pytest.mark.slow]

LISTING = 4301


@pytest.fixture
def receiver() -> Any:
    running = CallbackReceiver(backend_rules=True).start()
    try:
        yield running
    finally:
        running.stop()


def without_run_identity(body: dict[str, Any]) -> dict[str, Any]:
    comparable = {k: v for k, v in body.items() if k not in ("executionArn", "startedAt")}
    comparable["outputs"] = [
        {**o, "errorMessage": "<the transcoder's words>"}
        if o["errorCode"] == "VIDEO_TRANSCODE_FAILED"
        else o
        for o in body["outputs"]
    ]
    return comparable


def test_celery_and_state_machine_send_the_same_callback(
    celery_worker, receiver: CallbackReceiver, settings, monkeypatch, moto_server, s3_bucket
) -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, LISTING, photos=2, videos=1, corrupt=1, corrupt_videos=1)
    # One raw object never uploaded: a validation error for that asset.
    missing = listing.photos[-1]
    storage.delete(missing.s3_key_raw)
    settings.CALLBACK_URL = receiver.url
    celery_worker.start()

    job = listing_start_processing(listing_identity_id=LISTING)
    wait_until(lambda: len(receiver.received) == 1, timeout=180, what="the Celery callback")
    celery_received = receiver.received[0]
    secret = settings.CALLBACK_SECRET
    assert verify_signature(celery_received.body, secret, celery_received.headers[SIGNATURE_HEADER])
    stored = MediaProcessingJob.objects.get(pk=job.pk)
    # What the portal applied is byte for byte what it sent.
    assert stored.callback_body == celery_received.body.decode()

    # Same input, the other engine, from scratch: no derivative left to skip.
    for info in list(storage.list(f"{LISTING}/processed/")):
        storage.delete(info.key)
    set_lambda_environment(
        monkeypatch,
        endpoint_url=moto_server.endpoint_url,
        bucket=s3_bucket,
        callback_url=receiver.url,
        callback_secret=secret,
    )
    machine = StateMachine(PROCESSING, RESOURCES, name="two-engines")
    execution = machine.start_execution(workflow_input(job=job))
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert len(receiver.received) == 2
    asl_received = receiver.received[1]
    assert verify_signature(asl_received.body, secret, asl_received.headers[SIGNATURE_HEADER])

    assert receiver.rejected == []  # both bodies bind in the TOQ backend's request type
    celery_body, asl_body = celery_received.json(), asl_received.json()
    assert celery_body["status"] == "PARTIAL_SUCCESS"
    assert {o["errorCode"] for o in celery_body["outputs"]} == {
        "",
        "CORRUPT_IMAGE",
        "OBJECT_NOT_FOUND",
        "VIDEO_TRANSCODE_FAILED",
    }
    broken_video = listing.corrupt_videos[0].s3_key_raw
    [celery_video] = [o for o in celery_body["outputs"] if o["rawKey"] == broken_video]
    [asl_video] = [o for o in asl_body["outputs"] if o["rawKey"] == broken_video]
    assert "ffmpeg exited" in celery_video["errorMessage"]
    assert asl_video["errorMessage"].startswith("the video could not be transcoded: ")
    # the good photo (the other one was never uploaded) and the good video are processed
    assert sum(1 for o in celery_body["outputs"] if not o["errorCode"]) == 2
    assert celery_body["executionArn"] == stored.external_id
    assert asl_body["executionArn"] == execution.arn
    assert without_run_identity(celery_body) == without_run_identity(asl_body)
