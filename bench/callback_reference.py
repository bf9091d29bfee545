"""The reference of benchmark 3: a callback receiver that does only the irreducible work.

HMAC check of the raw body, the job id read from the JSON, then in one transaction
``SELECT ... FOR UPDATE`` of the job row and one UPDATE of it (status, body, completion
time). No asset rows, no events, no validation beyond that: the stack's own limit for a
signed callback on the same gunicorn, Django middleware and MariaDB as the product.

Mounted only by the bench's settings (``bench.callback_settings``), never by the product.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from media_jobs.pipeline.callback import SIGNATURE_HEADER, verify_signature
from toqportal.urls import urlpatterns as portal_urlpatterns

REFERENCE_PATH = "bench/reference-callback"


@csrf_exempt
def reference_callback(request: HttpRequest) -> HttpResponse:
    body = request.body
    if not verify_signature(body, settings.CALLBACK_SECRET, request.headers.get(SIGNATURE_HEADER)):
        return JsonResponse({"error": "bad signature"}, status=401)
    payload = json.loads(body)
    job_id = int(payload["jobId"])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT id FROM media_processing_jobs WHERE id = %s FOR UPDATE", [job_id])
        if cursor.fetchone() is None:
            return JsonResponse({"error": "no such job"}, status=404)
        cursor.execute(
            "UPDATE media_processing_jobs SET status = %s, callback_body = %s, completed_at = %s "
            "WHERE id = %s",
            [payload["status"], body.decode(), timezone.now(), job_id],
        )
    return JsonResponse({"jobId": job_id, "status": payload["status"]})


urlpatterns = [path(REFERENCE_PATH, reference_callback), *portal_urlpatterns]
