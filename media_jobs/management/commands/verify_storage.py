"""``manage.py verify_storage``: database-versus-storage drift per listing (read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandParser
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...selectors.operations import listings_with_assets
from ...services.backfill import ItemResult
from ..base import (
    OperationCommand,
    Progress,
    Summary,
    add_listing_argument,
    chunks,
    queryset_batches,
)

# Keys shown per kind of drift in the text report (--json has them all).
SHOWN_PER_KIND = 10


class Command(OperationCommand):
    help_text = _(
        "Report drift between media_assets and the bucket, per listing: assets whose raw or "
        "processed object is missing, derivatives with no asset, raw objects with no row, and "
        "stale ZIPs. Read-only. Exit status 1 when drift is found."
    )
    operation = "verify_storage"
    item_label = "listing"

    def add_selection_arguments(self, parser: CommandParser) -> None:
        add_listing_argument(
            parser,
            gettext(
                "Listings to check (repeat or comma-separate). Default: every listing with assets."
            ),
        )

    def select(self, options: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        if options["listing_ids"]:
            yield from chunks(sorted(set(options["listing_ids"])), batch_size)
            return
        yield from queryset_batches(listings_with_assets(), batch_size, "listing_identity_id")

    def count(self, options: dict[str, Any]) -> int | None:
        if options["listing_ids"]:
            return len(set(options["listing_ids"]))
        return listings_with_assets().values("listing_identity_id").distinct().count()

    def item_line(self, progress: Progress, ref: Any, result: ItemResult, dry_run: bool) -> None:
        # A verification changes nothing, so a dry run reads exactly like a real run.
        super().item_line(progress, ref, result, dry_run=False)
        if self.as_json or self.verbosity < 1 or "drift" not in result.tags:
            return
        data = result.data
        details = [
            (
                gettext("raw missing"),
                [f"asset #{d['asset_id']} ({d['status']}) {d['key']}" for d in data["raw_missing"]],
            ),
            (
                gettext("processed missing"),
                [
                    f"asset #{d['asset_id']} {d['field']}: {d['key'] or '(empty)'}"
                    for d in data["processed_missing"]
                ],
            ),
            (gettext("orphan derivative"), data["orphan_derivatives"]),
            (gettext("raw without asset"), data["raw_without_asset"]),
        ]
        zip_state = data["zip"]
        if data["counts"]["stale_zip"]:
            details.append(
                (
                    gettext("stale ZIP"),
                    [
                        gettext("%(key)s modified %(modified)s, older than %(newest)s (%(at)s)")
                        % {
                            "key": zip_state["key"],
                            "modified": zip_state["zip_modified"],
                            "newest": zip_state["newest_processed_key"],
                            "at": zip_state["newest_processed"],
                        }
                    ],
                )
            )
        if data["counts"]["missing_zip"]:
            details.append(
                (
                    gettext("missing ZIP"),
                    [
                        gettext("%(key)s (a finalization succeeded before)")
                        % {"key": zip_state["key"]}
                    ],
                )
            )
        for kind, lines in details:
            for line in lines[:SHOWN_PER_KIND]:
                progress.write(self.stdout, f"    {kind}: {line}")
            if len(lines) > SHOWN_PER_KIND:
                progress.write(
                    self.stdout,
                    f"    {kind}: ... "
                    + gettext("%(count)s more (--json lists all)")
                    % {"count": len(lines) - SHOWN_PER_KIND},
                )

    def problem(self, summary: Summary) -> str | None:
        problems = []
        if summary.counts["drift"]:
            problems.append(
                gettext("drift found in %(drift)s of %(selected)s listings")
                % {"drift": summary.counts["drift"], "selected": summary.selected}
            )
        failed = super().problem(summary)
        if failed:
            problems.append(failed)
        return "; ".join(problems) or None
