"""The change benchmark 4 recommends, as a bench-only WSGI entry point: the callback
receiver with the asset rows written by one ``bulk_update`` instead of one UPDATE each.

``services.callbacks._apply_outputs`` saves every asset on its own (40 outputs = 40
round trips to MariaDB inside the transaction). Here the same ``asset_apply_output`` rules
run in memory and the rows go out in one statement; everything else (signature, job
update, events, one transaction) is the project's code unchanged. Gunicorn serves this
module instead of ``toqportal.wsgi`` in the proposal phase of ``python -m bench.callback``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toqportal.wsgi import application  # sets Django up; what gunicorn serves

__all__ = ["application"]

from media_jobs.models import MediaAsset  # noqa: E402 - needs the app registry
from media_jobs.services import callbacks  # noqa: E402


def _apply_outputs_bulk(job: Any, outputs: list[Any]) -> tuple[int, list[str], list[str]]:
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    malformed: list[str] = []
    for entry in outputs:
        raw_key = entry.get("rawKey") if isinstance(entry, Mapping) else None
        if not isinstance(raw_key, str) or not raw_key:
            malformed.append(str(entry)[:200])
            continue
        by_key.setdefault(raw_key, []).append(entry)
    assets = list(
        MediaAsset.objects.select_for_update()
        .filter(listing_identity_id=job.listing_identity_id, s3_key_raw__in=list(by_key))
        .order_by("id")
    )
    found: set[str] = set()
    for asset in assets:
        found.add(asset.s3_key_raw or "")
        asset.save = lambda **kwargs: None  # type: ignore[method-assign] - saved in bulk below
        for entry in by_key.get(asset.s3_key_raw or "", ()):
            callbacks.asset_apply_output(asset=asset, output=entry)
        del asset.save
    if assets:
        MediaAsset.objects.bulk_update(assets, ["status", "s3_key_processed", "metadata"])
    unknown = [key for key in by_key if key not in found]
    return len(assets), unknown, malformed


callbacks._apply_outputs = _apply_outputs_bulk
