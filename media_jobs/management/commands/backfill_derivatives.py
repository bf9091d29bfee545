"""``manage.py backfill_derivatives``: regenerate derivatives of PROCESSED assets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandParser
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...pipeline.keys import SEGMENT_BY_TYPE
from ...selectors.operations import assets_for_backfill
from ..base import (
    OperationCommand,
    add_listing_argument,
    check_range,
    choice_list,
    id_list,
    queryset_batches,
    since_moment,
    until_moment,
    usage_error,
)


class Command(OperationCommand):
    help_text = _(
        "Regenerate the derivatives of PROCESSED assets (photos: the four JPEG sizes; videos: "
        "poster frame and transcode) and record them on the rows the way a callback does. "
        "By default an asset whose derivatives all exist and were made from its current raw "
        "object is skipped, so an interrupted run resumes where it stopped."
    )
    operation = "backfill_derivatives"
    item_label = "asset"

    def add_selection_arguments(self, parser: CommandParser) -> None:
        add_listing_argument(parser, gettext("Only these listings (repeat or comma-separate)."))
        parser.add_argument(
            "--asset",
            dest="asset_ids",
            action="extend",
            type=id_list(gettext("asset id")),
            default=[],
            metavar="ID[,ID...]",
            help=gettext("Only these assets."),
        )
        parser.add_argument(
            "--asset-type",
            dest="asset_types",
            action="extend",
            type=choice_list(gettext("asset type"), SEGMENT_BY_TYPE),
            default=[],
            metavar="TYPE[,TYPE...]",
            help=gettext("Only these types: %(types)s.") % {"types": ", ".join(SEGMENT_BY_TYPE)},
        )
        parser.add_argument(
            "--since",
            type=since_moment,
            help=gettext(
                "Only listings with a processing job completed at or after this (YYYY-MM-DD or ISO time)."
            ),
        )
        parser.add_argument(
            "--until",
            type=until_moment,
            help=gettext("... and before this (a plain date includes that whole day)."),
        )
        parser.add_argument(
            "--missing-only",
            action="store_true",
            help=gettext(
                "Only assets with a derivative absent from storage (present ones are kept even "
                "when another system made them)."
            ),
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=gettext("Regenerate every selected asset, even when its derivatives are current."),
        )

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["force"] and options["missing_only"]:
            raise usage_error(
                gettext("--force and --missing-only contradict each other; choose one")
            )
        check_range(options["since"], options["until"], "--since/--until")
        return {"force": options["force"], "missing_only": options["missing_only"]}

    def _assets(self, options: dict[str, Any]) -> Any:
        assets = assets_for_backfill(
            listing_ids=options["listing_ids"],
            asset_types=options["asset_types"] or list(SEGMENT_BY_TYPE),
            processed_since=options["since"],
            processed_until=options["until"],
        )
        if options["asset_ids"]:
            assets = assets.filter(pk__in=options["asset_ids"])
        return assets

    def select(self, options: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        yield from queryset_batches(self._assets(options), batch_size)

    def count(self, options: dict[str, Any]) -> int | None:
        return self._assets(options).count()
