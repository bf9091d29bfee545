"""``manage.py rebuild_zips``: finalize again listings whose ZIP is missing or stale."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandParser
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...selectors.operations import listings_finalized_before
from ..base import OperationCommand, add_listing_argument, chunks, queryset_batches


class Command(OperationCommand):
    help_text = _(
        "Start a finalization (the listing ZIP) for listings whose ZIP is missing or older "
        "than their newest processed asset. Without --listing it looks at listings that were "
        "finalized before. Listings with a finalization still running, or with assets not "
        "PROCESSED, are skipped."
    )
    operation = "rebuild_zips"
    item_label = "listing"

    def add_selection_arguments(self, parser: CommandParser) -> None:
        add_listing_argument(
            parser,
            gettext(
                "Only these listings (also ones never finalized). Default: every listing that had "
                "a finalization job."
            ),
        )
        parser.add_argument(
            "--force", action="store_true", help=gettext("Finalize even when the ZIP is current.")
        )

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"force": options["force"]}

    def select(self, options: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        if options["listing_ids"]:
            yield from chunks(sorted(set(options["listing_ids"])), batch_size)
            return
        yield from queryset_batches(listings_finalized_before(), batch_size, "listing_identity_id")

    def count(self, options: dict[str, Any]) -> int | None:
        if options["listing_ids"]:
            return len(set(options["listing_ids"]))
        return listings_finalized_before().values("listing_identity_id").distinct().count()
