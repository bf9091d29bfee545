"""The listing page (its assets, jobs and ZIP) and the storage check of a listing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.admin import AdminSite
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import ObjectInfo, ObjectNotFound
from media_jobs.selectors import admin as selectors
from media_jobs.services.storage_audit import storage_check
from media_jobs.storage import pipeline_storage

from .asset_cards import asset_cards
from .common import can_operate, object_url, page_context, require_view, s3_console_url

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise


def listing_view(site: AdminSite, request: HttpRequest, listing_identity_id: int) -> HttpResponse:
    require_view(request)
    storage = pipeline_storage()
    assets = selectors.listing_assets(listing_identity_id=listing_identity_id)
    jobs = selectors.listing_jobs(listing_identity_id=listing_identity_id, limit=100)
    if not assets and not jobs:
        raise Http404(
            _("Listing %(listing)s has no assets and no jobs.") % {"listing": listing_identity_id}
        )
    zip_job = selectors.listing_zip_job(listing_identity_id=listing_identity_id)
    zip_key = keys.zip_key(listing_identity_id)
    zip_info: ObjectInfo | None = None
    zip_problem: StrOrPromise | None = None
    try:
        zip_info = storage.head(zip_key)
    except ObjectNotFound:
        zip_problem = (
            _("No ZIP in storage.") if zip_job is None else _("The ZIP is MISSING from storage.")
        )
    except Exception as exc:  # noqa: BLE001 - storage down: say so on the page
        zip_problem = _("Storage could not be asked: %(error)s") % {"error": exc}
    payload = zip_job.payload if zip_job and isinstance(zip_job.payload, dict) else {}
    return TemplateResponse(
        request,
        "media_jobs/listing.html",
        page_context(
            site,
            request,
            _("Listing %(listing)s") % {"listing": listing_identity_id},
            listing_identity_id=listing_identity_id,
            asset_cards=asset_cards(assets, storage=storage),
            jobs=jobs,
            zip_job=zip_job,
            zip_key=zip_key,
            zip_info=zip_info,
            zip_problem=zip_problem,
            zip_assets=payload.get("assetsZipped"),
            zip_size=payload.get("zipSizeBytes"),
            zip_url=object_url(zip_key, storage=storage, download=True) if zip_info else None,
            storage_check_url=reverse("admin:media_jobs_storage_check", args=[listing_identity_id]),
            can_operate=can_operate(request),
        ),
    )


def storage_check_view(
    site: AdminSite, request: HttpRequest, listing_identity_id: int
) -> HttpResponse:
    """Expected keys (pipeline.keys) against ``storage.list(prefix)``; a fragment for the
    job/listing pages (``?fragment=1``) or a page of its own."""
    require_view(request)
    storage = pipeline_storage()
    check = storage_check(listing_identity_id=listing_identity_id, storage=storage)
    rows = [
        {
            "obj": obj,
            "url": object_url(obj.key, storage=storage) if obj.present else None,
            "console_url": s3_console_url(obj.key) if obj.present else None,
            "state": "present" if obj.present else ("missing" if obj.required else "absent"),
        }
        for obj in check.expected
    ]
    context = {
        "check": check,
        "rows": rows,
        "extra_rows": [
            {"info": info, "url": object_url(info.key, storage=storage)}
            for info in check.unexpected[:200]
        ],
        "listing_identity_id": listing_identity_id,
    }
    template = "media_jobs/fragments/storage_check.html"
    if request.GET.get("fragment") == "1":
        return TemplateResponse(request, template, context)
    context.update(
        page_context(
            site,
            request,
            _("Storage check of listing %(listing)s") % {"listing": listing_identity_id},
        ),
        fragment_template=template,
    )
    return TemplateResponse(request, "media_jobs/fragment_page.html", context)
