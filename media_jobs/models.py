"""The two tables of docs/contract.md §3, shared with the TOQ backend, and the portal's own tables.

``media_processing_jobs`` and ``media_assets`` may belong to the backend's live database: with
``MEDIA_JOBS_MANAGE_TABLES=false`` both models are unmanaged and migrate leaves them alone.
Status changes go through ``media_jobs.services``; nothing here decides a status.

Long on purpose: Django finds an app's models in one module; each model is short.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .fields import (
    CurrentTimestamp,
    PlainDateTimeField,
    PlainTextField,
    TimestampField,
    UnsignedAutoField,
    UnsignedIntegerField,
)

# TEXT holds at most this many bytes on MySQL/MariaDB.
TEXT_MAX_BYTES = 65_535


class JobStatus(models.TextChoices):
    PENDING = "PENDING", _("Pending")
    RUNNING = "RUNNING", _("Running")
    SUCCEEDED = "SUCCEEDED", _("Succeeded")
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS", _("Partial success")
    FAILED = "FAILED", _("Failed")


TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.PARTIAL_SUCCESS, JobStatus.FAILED}
)
ACTIVE_JOB_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})


class JobProvider(models.TextChoices):
    STEP_FUNCTIONS = "STEP_FUNCTIONS", _("Processing")
    STEP_FUNCTIONS_FINALIZATION = "STEP_FUNCTIONS_FINALIZATION", _("Finalization (ZIP)")
    MEDIACONVERT = "MEDIACONVERT", _("MediaConvert")


class AssetType(models.TextChoices):
    PHOTO_VERTICAL = "PHOTO_VERTICAL", _("Photo (vertical)")
    PHOTO_HORIZONTAL = "PHOTO_HORIZONTAL", _("Photo (horizontal)")
    VIDEO_VERTICAL = "VIDEO_VERTICAL", _("Video (vertical)")
    VIDEO_HORIZONTAL = "VIDEO_HORIZONTAL", _("Video (horizontal)")
    THUMBNAIL = "THUMBNAIL", _("Thumbnail")
    ZIP = "ZIP", _("ZIP")
    PROJECT_DOC = "PROJECT_DOC", _("Project document")
    PROJECT_RENDER = "PROJECT_RENDER", _("Project render")


class AssetStatus(models.TextChoices):
    PENDING_UPLOAD = "PENDING_UPLOAD", _("Pending upload")
    PROCESSING = "PROCESSING", _("Processing")
    PROCESSED = "PROCESSED", _("Processed")
    FAILED = "FAILED", _("Failed")


class MediaProcessingJob(models.Model):
    id = UnsignedAutoField(primary_key=True, verbose_name=_("job id"))
    listing_identity_id = UnsignedIntegerField(
        verbose_name=_("listing"), help_text=_("The listing (listingIdentityId) this job works on.")
    )
    status = models.CharField(
        max_length=50,
        choices=JobStatus.choices,
        default=JobStatus.PENDING,
        help_text=_("PENDING -> RUNNING -> SUCCEEDED | PARTIAL_SUCCESS | FAILED."),
    )
    provider = models.CharField(
        max_length=50,
        choices=JobProvider.choices,
        default=JobProvider.STEP_FUNCTIONS,
        verbose_name=_("kind"),
        help_text=_("STEP_FUNCTIONS = processing, STEP_FUNCTIONS_FINALIZATION = ZIP."),
    )
    external_id = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text=_("Step Functions execution ARN, or the Celery workflow id."),
    )
    payload = models.JSONField(
        null=True, blank=True, help_text=_("Result kept from the last terminal callback.")
    )
    retry_count = models.SmallIntegerField(
        null=True, default=0, db_default=0, help_text=_("0 for a first run; +1 per retry.")
    )
    started_at = TimestampField(null=True, blank=True)
    completed_at = TimestampField(null=True, blank=True)
    last_error = PlainTextField(
        null=True,
        blank=True,
        help_text=_("code=X | message | failureReason | meta={...}"),
    )
    callback_body = PlainTextField(
        null=True, blank=True, help_text=_("The raw JSON of the last callback, byte for byte.")
    )
    created_at = PlainDateTimeField(default=timezone.now, db_default=CurrentTimestamp())

    class Meta:
        db_table = "media_processing_jobs"
        managed = settings.MEDIA_JOBS_MANAGE_TABLES
        verbose_name = _("media processing job")
        ordering = ["-id"]
        permissions = [("operate_mediaprocessingjob", "Can retry, mark failed and reprocess")]
        indexes = [
            models.Index(fields=["listing_identity_id"], name="idx_mpj_listing"),
            models.Index(fields=["created_at"], name="idx_mpj_created_at"),
            models.Index(fields=["completed_at"], name="idx_mpj_completed_at"),
            models.Index(fields=["status", "created_at"], name="idx_mpj_status_created"),
            models.Index(fields=["provider", "created_at"], name="idx_mpj_provider_created"),
            models.Index(fields=["external_id"], name="idx_mpj_external_id"),
            # "Resolved": a later job of the same listing and kind SUCCEEDED - answered from
            # this index alone (InnoDB adds the id), never by reading job rows.
            models.Index(
                fields=["listing_identity_id", "provider", "status"],
                name="idx_mpj_listing_kind_status",
            ),
        ]

    def __str__(self) -> str:
        return gettext("job #%(job)s (%(kind)s, listing %(listing)s)") % {
            "job": self.id,
            "kind": self.get_provider_display(),
            "listing": self.listing_identity_id,
        }

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def is_finalization(self) -> bool:
        return self.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION


class MediaAsset(models.Model):
    id = UnsignedAutoField(primary_key=True)
    listing_identity_id = UnsignedIntegerField(verbose_name=_("listing"))
    asset_type = models.CharField(max_length=50, choices=AssetType.choices)
    sequence = models.IntegerField(help_text=_("Unique per listing and asset type."))
    status = models.CharField(
        max_length=50, choices=AssetStatus.choices, default=AssetStatus.PENDING_UPLOAD
    )
    s3_key_raw = models.CharField(
        max_length=255, null=True, blank=True, verbose_name=_("raw key"), help_text=_("Upload key.")
    )
    s3_key_processed = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        verbose_name=_("processed key"),
        help_text=_("The best derivative."),
    )
    title = models.CharField(max_length=255, null=True, blank=True)
    metadata = models.JSONField(
        null=True,
        blank=True,
        help_text=_("filename, clientId, thumbnailKey, {size}_{type} outputs, errorCode, error."),
    )

    class Meta:
        db_table = "media_assets"
        managed = settings.MEDIA_JOBS_MANAGE_TABLES
        verbose_name = _("media asset")
        ordering = ["listing_identity_id", "asset_type", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["listing_identity_id", "asset_type", "sequence"],
                name="uq_media_assets_listing_type_seq",
            )
        ]
        indexes = [
            models.Index(fields=["listing_identity_id", "status"], name="idx_ma_listing_status"),
            models.Index(fields=["s3_key_raw"], name="idx_ma_raw_key"),
            models.Index(fields=["status"], name="idx_ma_status"),
        ]

    def __str__(self) -> str:
        return f"{self.asset_type} #{self.sequence} of listing {self.listing_identity_id}"

    @property
    def meta(self) -> dict:
        return self.metadata if isinstance(self.metadata, dict) else {}


class EventKind(models.TextChoices):
    STARTED = "started", _("Started")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    RETRIED = "retried", _("Retried")
    NOTE = "note", _("Note")


# The steps of the timeline (``MediaJobEvent.step``) used across the code base (free text is
# allowed; these are the usual ones).
STEP_DISPATCH = "dispatch"
STEP_VALIDATE = "validate"
STEP_THUMBNAILS = "thumbnails"
STEP_POSTERS = "video_thumbnails"
STEP_TRANSCODE = "video_transcode"
STEP_CONSOLIDATE = "consolidate"
STEP_ZIP = "zip"
STEP_CALLBACK = "callback"
STEP_DELIVERY = "callback_delivery"
STEP_RETRY = "retry"
STEP_MARK_FAILED = "mark_failed"
STEP_RECONCILE = "reconcile"
STEP_REPROCESS = "reprocess"
STEP_WATCHDOG = "watchdog"


class MediaJobEvent(models.Model):
    """The step timeline of a job (the portal's own table): written by the Celery engine at
    every step, by the callback receiver, and by operator actions (retry, mark failed)."""

    job = models.ForeignKey(
        MediaProcessingJob,
        on_delete=models.CASCADE,
        db_constraint=False,  # the job table may belong to the backend's database
        related_name="events",
    )
    step = models.CharField(
        max_length=64, help_text=_("validate, thumbnails, callback, retry, ...")
    )
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    detail = models.JSONField(null=True, blank=True, help_text=_("Step-specific facts (JSON)."))

    class Meta:
        db_table = "media_job_events"
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["job", "at"], name="idx_mje_job_at"),
            # A page of jobs reads one step of each (dispatch, retry) without their timelines.
            models.Index(fields=["job", "step"], name="idx_mje_job_step"),
        ]

    def __str__(self) -> str:
        return f"{self.step} {self.kind} (job #{self.job_id})"


class OutboxState(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    EXPIRED = "expired", _("Expired")


class CallbackOutbox(models.Model):
    """A job result the TOQ backend must hear about (the portal's own table).

    Written in the transaction that applies the result, so a result is never applied
    without being queued for the backend; sent until the backend accepts it or its retry
    period (``expires_at``) is over. Each attempt is a ``CallbackDelivery`` row.
    """

    job = models.ForeignKey(
        MediaProcessingJob,
        on_delete=models.CASCADE,
        db_constraint=False,  # the job table may belong to the backend's database
        related_name="callback_outbox",
        verbose_name=_("job"),
    )
    listing_identity_id = UnsignedIntegerField(
        verbose_name=_("listing"), help_text=_("The job's listing, for filtering.")
    )
    body = models.TextField(
        verbose_name=_("body"),
        help_text=_("The canonical JSON of the result: every attempt sends these bytes."),
    )
    state = models.CharField(
        max_length=16,
        choices=OutboxState.choices,
        default=OutboxState.PENDING,
        verbose_name=_("state"),
        help_text=_(
            "pending: not accepted yet, sent again with backoff; delivered: the backend "
            "accepted it; expired: not accepted within the retry period (replay it)."
        ),
    )
    attempts = models.PositiveIntegerField(
        default=0, verbose_name=_("attempts"), help_text=_("Attempts made so far.")
    )
    next_attempt_at = models.DateTimeField(
        default=timezone.now,
        verbose_name=_("next attempt"),
        help_text=_("When a pending result is sent again."),
    )
    claimed_until = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("claimed until"),
        help_text=_("A sender is making an attempt; others leave the entry alone until then."),
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last attempt"))
    last_status = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        verbose_name=_("last HTTP status"),
        help_text=_("The backend's answer to the last attempt (empty: no answer)."),
    )
    delivered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("delivered at"))
    expires_at = models.DateTimeField(
        verbose_name=_("expires at"),
        help_text=_("After this the result is no longer sent (CALLBACK_OUTBOX_TTL_SECONDS)."),
    )
    last_error = models.TextField(
        blank=True,
        default="",
        verbose_name=_("last error"),
        help_text=_("Why the last attempt failed."),
    )
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))

    class Meta:
        db_table = "media_callback_outbox"
        ordering = ["id"]
        verbose_name = _("callback outbox entry")
        verbose_name_plural = _("callback outbox")
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="idx_mco_state_next"),
            models.Index(fields=["job", "state"], name="idx_mco_job_state"),
            models.Index(fields=["listing_identity_id", "state"], name="idx_mco_listing_state"),
        ]

    def __str__(self) -> str:
        return f"callback of job #{self.job_id} ({self.state})"


class CallbackDelivery(models.Model):
    """One attempt to send a job's signed callback to CALLBACK_URL (the delivery log)."""

    job = models.ForeignKey(
        MediaProcessingJob,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="callback_deliveries",
    )
    url = models.CharField(max_length=500)
    request_body = models.TextField(help_text=_("The exact bytes that were signed and sent."))
    signature = models.CharField(max_length=64, help_text=_("X-Toq-Signature that was sent."))
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="", help_text=_("Network error, if any."))
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    succeeded = models.BooleanField(default=False)
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    outbox = models.ForeignKey(
        CallbackOutbox,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
        verbose_name=_("outbox entry"),
        help_text=_("The result this attempt sent (empty for replays and older attempts)."),
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "media_callback_deliveries"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = _("callback deliveries")
        indexes = [models.Index(fields=["job", "created_at"], name="idx_mcd_job_created")]

    def __str__(self) -> str:
        return f"callback of job #{self.job_id} attempt {self.attempt}"


class ErrorScope(models.TextChoices):
    JOB = "job", _("Job")
    ASSET = "asset", _("Asset")


class MediaJobError(models.Model):
    """One error code a failed or partially successful job ended with: the job's own code
    (scope job, the ``code=`` of a ``last_error`` line) or the code some of its assets
    failed with (scope asset, from the callback's outputs), with its message normalized.

    The portal's own table, written with the job's outcome (``services.job_errors``), so the
    error-code filter, the error groups, the dashboard and ``/metrics`` find a job by any of
    its codes through an index instead of reading ``last_error`` texts."""

    job = models.ForeignKey(
        MediaProcessingJob,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="error_codes",
    )
    listing_identity_id = models.PositiveIntegerField(verbose_name=_("listing"))
    scope = models.CharField(max_length=8, choices=ErrorScope.choices)
    code = models.CharField(max_length=100, blank=True, help_text=_("Empty when none was given."))
    message = models.CharField(
        max_length=255, blank=True, help_text=_("Normalized: what varies per job is masked.")
    )
    sample = models.CharField(max_length=300, blank=True, help_text=_("One message as it was."))
    assets = models.PositiveIntegerField(default=0, help_text=_("Assets that failed with it."))
    job_created_at = models.DateTimeField()
    job_completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "media_job_errors"
        ordering = ["-job_created_at", "-id"]
        indexes = [
            # The error-code filter reads job ids newest first from this index alone.
            models.Index(fields=["code", "job_created_at", "job"], name="idx_mjerr_code_created"),
            models.Index(fields=["job_created_at"], name="idx_mjerr_created"),
            models.Index(fields=["job_completed_at"], name="idx_mjerr_completed"),
        ]

    def __str__(self) -> str:
        return f"{self.code or '(no code)'} ({self.scope}) of job #{self.job_id}"
