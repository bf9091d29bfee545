"""``manage.py import_raw_assets``: rows for raw uploads that never reached the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandParser
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...services.raw_import import raw_keys_in_storage
from ...storage import pipeline_storage
from ..base import OperationCommand, add_listing_argument, chunks, usage_error


class Command(OperationCommand):
    help_text = _(
        "Scan the raw prefix of listings (or the whole bucket with --all) and create the "
        "missing media_assets rows as PENDING_UPLOAD: type from the key's segment, sequence "
        "from a numeric reference (horizontal-03 -> 3) or else the next free one."
    )
    operation = "import_raw_assets"
    item_label = "raw object"

    def add_selection_arguments(self, parser: CommandParser) -> None:
        add_listing_argument(parser, gettext("Listings whose '<id>/raw/' prefix is scanned."))
        parser.add_argument(
            "--all",
            dest="whole_bucket",
            action="store_true",
            help=gettext(
                "Scan the whole bucket (every '<listing>/raw/...' key) instead of --listing."
            ),
        )

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        if bool(options["listing_ids"]) == bool(options["whole_bucket"]):
            raise usage_error(
                gettext("give either --listing ID[,ID...] or --all (the whole bucket)")
            )
        return {}

    def select(self, options: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        listing_ids = sorted(set(options["listing_ids"])) or None
        keys = raw_keys_in_storage(storage=pipeline_storage(), listing_ids=listing_ids)
        yield from chunks(keys, batch_size)
