"""The asset cards the job and listing pages show: links, preview, error, and the job page's
table rows formatted in one pass."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext

from media_jobs.models import AssetStatus, MediaAsset
from media_jobs.pipeline.storage import Storage
from media_jobs.selectors import admin as selectors
from media_jobs.storage import pipeline_storage

from .common import code_spans, copy_button, object_url, status_badge


def asset_cards(assets: Sequence[MediaAsset], *, storage: Storage | None = None) -> list[dict]:
    """What the job and listing pages show per asset (links are presigned or portal URLs)."""
    storage = storage or pipeline_storage()
    # Labels looked up once (get_FOO_display rebuilds its choices map on every call), and
    # each key presigned once (the preview is also one of the links).
    type_labels = dict(MediaAsset._meta.get_field("asset_type").flatchoices)
    status_labels = dict(MediaAsset._meta.get_field("status").flatchoices)
    urls: dict[str, str] = {}

    def url_of(key: str) -> str:
        if key not in urls:
            urls[key] = object_url(key, storage=storage)
        return urls[key]

    cards = []
    for asset in assets:
        thumbnail = selectors.asset_thumbnail_key(asset)
        code, message = selectors.asset_error(asset)
        cards.append(
            {
                "asset": asset,
                "type_label": type_labels.get(asset.asset_type, asset.asset_type),
                "badge": status_badge(asset.status, status_labels.get(asset.status, asset.status)),
                "name": asset.meta.get("filename") or asset.title or asset.s3_key_raw or "-",
                "preview_url": (
                    url_of(thumbnail)
                    if thumbnail and asset.status == AssetStatus.PROCESSED
                    else None
                ),
                "links": [(label, url_of(key)) for label, key in selectors.asset_links(asset)],
                "error_code": code,
                "error_message": message,
            }
        )
    return cards


class AssetChangeUrl:
    """The admin change URL of an asset, reversed once per page (not once per asset)."""

    _PLACEHOLDER = 2_147_483_647

    def __init__(self) -> None:
        url = reverse("admin:media_jobs_mediaasset_change", args=[self._PLACEHOLDER])
        self._head, self._tail = url.split(str(self._PLACEHOLDER))

    def __call__(self, pk: int) -> str:
        return f"{self._head}{int(pk)}{self._tail}"


def asset_rows(cards: list[dict[str, Any]]) -> None:
    """Give each job-page card its table row as one escaped string (``row``).

    A listing of 500 assets rendered through template tags cost ~100 ms of a job page;
    formatted here, a few ms. The cards carry the job's view of each asset (``in_job``,
    ``job_outcome``, ``job_advice``, ``copy_key``: see ``job_page.job_page_context``).
    """
    change_url = AssetChangeUrl()
    text = {
        "preview_of": str(_("preview of %(name)s")),
        "no_preview": str(_("no preview")),
        "in_job": str(_("in this job")),
        "processed": pgettext("an asset's outcome in a job", "processed"),
        "failed": pgettext("an asset's outcome in a job", "failed"),
        "no_code": str(_("(no code)")),
        "what_to_do": str(_("What to do:")),
        "now": str(_("now:")),
        "no_result": str(_("no result yet")),
        "unknown": str(_("unknown (the job was started elsewhere)")),
        "not_in_job": str(_("not in this job")),
    }
    for card in cards:
        card["row"] = _asset_row(card, change_url(card["asset"].pk), text)


def _asset_row(card: dict[str, Any], change_url: str, text: dict[str, str]) -> SafeString:
    """One row of the job page's asset table (templates/media_jobs/includes/asset_table.html),
    every value escaped with ``html.escape`` (what Django's ``escape`` does, without its
    lazy-text wrapper: ~30 values a row, 500 rows)."""
    asset = card["asset"]
    if card["preview_url"]:
        alt = text["preview_of"] % {"name": card["name"]}
        preview = (
            f'<img class="toq-thumb" src="{_esc(card["preview_url"])}" alt="{_esc(alt)}" '
            'loading="lazy">'
        )
    else:
        preview = f'<span class="toq-muted">{_esc(text["no_preview"])}</span>'
    in_job = card.get("in_job")
    badge = (
        f'<br><span class="toq-badge toq-badge--running toq-in-job">{_esc(text["in_job"])}</span>'
        if in_job
        else ""
    )
    copy = copy_button(card.get("copy_key"))
    links = "".join(
        f'<li><a href="{_esc(url)}">{_esc(label)}</a></li>' for label, url in card["links"]
    )
    row_class = ' class="toq-in-job-row"' if in_job else ""
    return mark_safe(
        f'<tr{row_class}><td class="toq-preview-cell">{preview}</td><td><a href="'
        f'{_esc(change_url)}">#{asset.pk}</a> {_esc(card["type_label"])} {asset.sequence}<br>'
        f'<span class="toq-filename">{_esc(card["name"])}</span>'
        f"{' ' + copy if copy else ''}{badge}</td>"
        f"<td>{card['badge']}</td>"
        f'<td class="toq-job-outcome">{_job_outcome_cell(card, text)}</td>'
        f'<td><ul class="toq-links">{links}</ul></td></tr>'
    )


def _job_outcome_cell(card: dict[str, Any], text: dict[str, str]) -> str:
    """What this job did to the asset: its own outcome, else the asset's current error."""
    outcome = card.get("job_outcome")
    if outcome is not None:
        if outcome.processed:
            return f'<span class="toq-badge toq-badge--ok">{_esc(text["processed"])}</span>'
        cell = (
            f'<span class="toq-badge toq-badge--failed">{_esc(text["failed"])}</span> '
            f'<code class="toq-failed">{_esc(outcome.code or text["no_code"])}</code>'
        )
        if outcome.message:
            cell += f'<div class="toq-error">{_esc(outcome.message)}</div>'
        if card.get("job_advice"):
            advice = code_spans(card["job_advice"])
            cell += f'<div class="toq-advice">{_esc(text["what_to_do"])} {advice}</div>'
        return cell
    if card["error_code"]:
        cell = (
            f'<span class="toq-muted">{_esc(text["now"])}</span> '
            f'<code class="toq-failed">{_esc(card["error_code"])}</code>'
        )
        if card["error_message"]:
            cell += f'<div class="toq-error">{_esc(card["error_message"])}</div>'
        return cell
    if card.get("in_job"):
        return f'<span class="toq-muted">{_esc(text["no_result"])}</span>'
    if card.get("in_job") is None:
        return f'<span class="toq-muted">{_esc(text["unknown"])}</span>'
    return f'<span class="toq-muted">{_esc(text["not_in_job"])}</span>'


def _esc(value: Any) -> str:
    return html.escape(str(value))
