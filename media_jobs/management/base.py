"""The common base of the operations commands (docs/operations.md).

Every command built on :class:`OperationCommand`:

- takes ``--dry-run``, ``--batch-size``, ``--limit``, ``--json`` and ``--enqueue``;
- selects items (asset ids, job ids, listing ids or raw keys) lazily, in batches, and hands
  each to ONE service function (``media_jobs.ops_tasks.OPERATIONS``): inline, or in batches
  to the workers with ``--enqueue`` (the same function runs there);
- shows a tqdm bar on a terminal and a plain progress line per batch (at most one every
  few seconds) otherwise, both on stderr, so stdout stays clean for ``--json``;
- ends with one summary line ``selected=.. done=.. skipped=.. failed=..`` or, with
  ``--json``, one JSON document;
- exit status: 0 all fine, 1 some item failed (or drift was found), 2 bad arguments - a
  one-line error, never a traceback. One failing item never stops the others.

``--limit N`` bounds the items that are (or, in a dry run, would be) worked on: items found
already done are ``skipped`` and do not count, so repeating a limited run makes progress.
With ``--enqueue`` it bounds the items queued.

Long on purpose: the one base every operations command shares (arguments, parsing,
selection in batches, progress, summary, exit status); splitting it would spread one
command-line contract over several modules.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import close_old_connections, connections
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from tqdm import tqdm

from ..models import AssetType, JobProvider, JobStatus
from ..ops_tasks import operation_enqueue, run_item
from ..selectors.operations import ids_in_batches
from ..services.backfill import ItemResult

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger("toq.operations")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PLAIN_PROGRESS_INTERVAL_SECONDS = 5.0
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 10_000

KIND_ALIASES = {
    "processing": JobProvider.STEP_FUNCTIONS,
    "finalization": JobProvider.STEP_FUNCTIONS_FINALIZATION,
    "zip": JobProvider.STEP_FUNCTIONS_FINALIZATION,
    "mediaconvert": JobProvider.MEDIACONVERT,
}
# What the commands walk (OperationCommand.item_label), counted in their messages.
ITEM_LABELS_PLURAL = {
    "asset": _("assets"),
    "job": _("jobs"),
    "listing": _("listings"),
    "raw object": _("raw objects"),
    "item": _("items"),
}


def usage_error(message: str) -> CommandError:
    """A bad argument: one line on stderr, exit status 2."""
    return CommandError(message, returncode=EXIT_USAGE)


class OneLineErrorParser(CommandParser):
    """argparse prints the whole usage before an error; operators get one line instead
    (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        if self.called_from_command_line:
            self.exit(
                EXIT_USAGE,
                gettext("%(prog)s: error: %(message)s (see --help)")
                % {"prog": self.prog, "message": message}
                + "\n",
            )
        raise usage_error(gettext("Error: %(message)s") % {"message": message})


# -- argument types (argparse calls them; ArgumentTypeError becomes a one-line error) --------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            gettext("%(value)r is not a whole number") % {"value": text}
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(gettext("%(value)r must be at least 1") % {"value": text})
    return value


def batch_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            gettext("%(value)r is more than %(max)s") % {"value": text, "max": MAX_BATCH_SIZE}
        )
    return value


def id_list(what: str) -> Any:
    """Comma-separated positive integers (``12,13``); used with ``action="extend"``."""

    def parse(text: str) -> list[int]:
        values = []
        for part in text.split(","):
            part = part.strip()
            if not part.isdigit() or int(part) < 1 or int(part) > 2**32 - 1:
                raise argparse.ArgumentTypeError(
                    gettext("%(value)r is not a %(what)s (a positive whole number)")
                    % {"value": part, "what": what}
                )
            values.append(int(part))
        return values

    return parse


def choice_list(what: str, valid: Iterable[str], aliases: Mapping[str, str] | None = None) -> Any:
    """Comma-separated values from ``valid`` (case-insensitive; ``aliases`` map to values)."""
    valid = list(valid)
    aliases = aliases or {}

    def parse(text: str) -> list[str]:
        values = []
        for part in text.split(","):
            name = part.strip()
            value = aliases.get(name.lower()) or (name.upper() if name.upper() in valid else None)
            if value is None:
                names = ", ".join(list(aliases) + valid)
                raise argparse.ArgumentTypeError(
                    gettext("unknown %(what)s %(value)r; expected one of %(names)s")
                    % {"what": what, "value": name, "names": names}
                )
            values.append(str(value))
        return values

    return parse


_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """``90`` (seconds), ``30m``, ``2h``, ``7d``, ``1w``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            gettext(
                "%(value)r is not a duration; use seconds or a number with s, m, h, d or w "
                "(e.g. 2h)"
            )
            % {"value": text}
        )
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def _moment(text: str, *, end_of_day: bool) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(
                day + timedelta(days=1 if end_of_day else 0), datetime.min.time()
            )
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            gettext("%(value)r is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+00:00]")
            % {"value": text}
        ) from None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


def since_moment(text: str) -> datetime:
    """A start (inclusive); a plain date means its midnight."""
    return _moment(text, end_of_day=False)


def until_moment(text: str) -> datetime:
    """An end (exclusive); a plain date means through the end of that day."""
    return _moment(text, end_of_day=True)


def check_range(start: datetime | None, end: datetime | None, names: str) -> None:
    if start is not None and end is not None and start >= end:
        raise usage_error(
            gettext("%(names)s: the range is empty or inverted (%(start)s .. %(end)s)")
            % {"names": names, "start": start, "end": end}
        )


# -- summary and progress ------------------------------------------------------------------


@dataclass
class Summary:
    command: str
    dry_run: bool
    enqueue: bool
    counts: Counter[str] = field(default_factory=Counter)
    items: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    limit_reached: bool = False
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    OUTCOMES: ClassVar[tuple[str, ...]] = ("done", "skipped", "failed")

    @property
    def selected(self) -> int:
        return sum(self.counts[o] for o in self.OUTCOMES) + self.counts["enqueued"]

    def add(self, ref: Any, result: ItemResult) -> None:
        self.counts[result.outcome] += 1
        self.counts.update(result.tags)
        self.items.append(result.as_json(ref))

    def worked(self) -> int:
        """Items that count towards --limit: done, failed or queued (not skipped)."""
        return self.counts["done"] + self.counts["failed"] + self.counts["enqueued"]

    def counts_text(self) -> str:
        parts = [f"selected={self.selected}"] + [f"{o}={self.counts[o]}" for o in self.OUTCOMES]
        parts += [
            f"{name}={value}"
            for name, value in sorted(self.counts.items())
            if name not in self.OUTCOMES and value
        ]
        if self.tasks:
            parts.append(f"tasks={len(self.tasks)}")
        return " ".join(parts)

    def line(self) -> str:
        notes = []
        if self.dry_run:
            notes.append(gettext("dry run: nothing changed"))
        if self.enqueue and not self.dry_run:
            notes.append(gettext("enqueued: the workers do the work"))
        if self.limit_reached:
            notes.append(gettext("limit reached"))
        if self.interrupted:
            notes.append(gettext("interrupted"))
        suffix = f" ({'; '.join(notes)})" if notes else ""
        return f"{self.command}: {self.counts_text()}{suffix}"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "command": self.command,
            "dry_run": self.dry_run,
            "enqueue": self.enqueue,
            "selected": self.selected,
            **{o: self.counts[o] for o in self.OUTCOMES},
            "counters": {k: v for k, v in sorted(self.counts.items()) if k not in self.OUTCOMES},
            "limit_reached": self.limit_reached,
            "interrupted": self.interrupted,
            "tasks": self.tasks,
            "items": self.items,
        }
        data.update(self.extra)
        return data


class Progress:
    """tqdm on a terminal, a plain line per batch (throttled) otherwise; both on stderr."""

    def __init__(
        self,
        *,
        stderr: OutputWrapper,
        summary: Summary,
        total: int | None,
        unit: str,
        enabled: bool,
        interval: float = PLAIN_PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self.stderr = stderr
        self.summary = summary
        self.total = total
        self.enabled = enabled
        self.interval = interval
        self._last_line: float | None = None
        self.bar = None
        if enabled and stderr.isatty():
            # The stream OutputWrapper wraps (its stubs type unknown attributes as callables).
            stream: TextIO = stderr._out  # type: ignore[assignment]
            self.bar = tqdm(
                total=total, unit=f" {unit}", file=stream, dynamic_ncols=True, leave=True
            )

    def item_done(self) -> None:
        if self.bar is not None:
            counts = self.summary.counts
            self.bar.set_postfix(
                done=counts["done"],
                skipped=counts["skipped"],
                failed=counts["failed"],
                refresh=False,
            )
            self.bar.update(1)

    def batch_done(self) -> None:
        if not self.enabled or self.bar is not None:
            return
        now = time.monotonic()
        if self._last_line is not None and now - self._last_line < self.interval:
            return
        self._last_line = now
        of_total = f"/{self.total}" if self.total is not None else ""
        self.stderr.write(
            f"progress {self.summary.command}: {self.summary.selected}{of_total} "
            f"({self.summary.counts_text()})"
        )

    def write(self, stream: OutputWrapper, line: str) -> None:
        """A line that must not tear the bar."""
        if self.bar is not None:
            self.bar.clear()
            stream.write(line)
            self.bar.refresh()
        else:
            stream.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the base command ----------------------------------------------------------------------


class TranslatedCommand(BaseCommand):
    """A command whose help is translatable: subclasses set ``help_text`` (``gettext_lazy``)
    and argparse gets it as a str, in the language active when the parser is built
    (``LANGUAGE_CODE`` for a command line)."""

    help_text: ClassVar[StrOrPromise] = ""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        self.help = str(self.help_text)
        return super().create_parser(prog_name, subcommand, **kwargs)


class OperationCommand(TranslatedCommand):
    """Subclasses set ``operation`` (a key of ``ops_tasks.OPERATIONS``) and implement
    ``add_selection_arguments``, ``build_params`` and ``select`` (and ``count`` when cheap)."""

    operation: ClassVar[str] = ""
    item_label: ClassVar[str] = "item"
    default_batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineErrorParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        common = parser.add_argument_group(gettext("operation options (every operations command)"))
        common.add_argument(
            "--dry-run",
            action="store_true",
            help=gettext("Print what would be done; change nothing."),
        )
        common.add_argument(
            "--batch-size",
            type=batch_size,
            default=self.default_batch_size,
            help=gettext(
                "Items per batch (a query, a progress line, a task). Default %(default)s."
            ),
        )
        common.add_argument(
            "--limit",
            type=positive_int,
            help=gettext("Stop after this many items were worked on (skipped ones do not count)."),
        )
        common.add_argument(
            "--json",
            action="store_true",
            help=gettext("Print a JSON summary instead of text lines."),
        )
        common.add_argument(
            "--enqueue",
            action="store_true",
            help=gettext(
                "Queue the work in batches for the Celery workers instead of doing it here."
            ),
        )
        self.add_selection_arguments(parser)

    # subclass hooks ---------------------------------------------------------------------

    def add_selection_arguments(self, parser: CommandParser) -> None:
        """The command's own selection flags."""

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate the options together (raise ``usage_error``) and return the JSON-able
        parameters the item function needs."""
        return {}

    def select(self, options: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        """Batches of item references (ids or keys), lazily."""
        raise NotImplementedError

    def count(self, options: dict[str, Any]) -> int | None:
        """The number of selected items when it is cheap to know (for the progress bar)."""
        return None

    def problem(self, summary: Summary) -> str | None:
        """A reason to exit with status 1, or None."""
        if summary.counts["failed"]:
            return gettext(
                "%(failed)s of %(selected)s %(items)s failed (see the FAILED lines; re-running "
                "retries only what is not done)"
            ) % {
                "failed": summary.counts["failed"],
                "selected": summary.selected,
                "items": self.item_label_plural,
            }
        return None

    # running -----------------------------------------------------------------------------

    @property
    def item_label_plural(self) -> str:
        """``items`` in the active language (the commands' own words for what they walk)."""
        return str(ITEM_LABELS_PLURAL.get(self.item_label, f"{self.item_label}s"))

    @property
    def command_name(self) -> str:
        return self.__module__.rsplit(".", 1)[-1]

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        self.as_json = options["json"]
        params = self.build_params(options)
        dry_run = options["dry_run"]
        enqueue = options["enqueue"] and not dry_run
        summary = Summary(self.command_name, dry_run=dry_run, enqueue=enqueue)
        progress = Progress(
            stderr=self.stderr,
            summary=summary,
            total=self.count(options),
            unit=self.item_label,
            enabled=self.verbosity > 0,
        )
        aborted: Exception | None = None
        try:
            self.run(options, params, summary, progress)
        except KeyboardInterrupt:
            summary.interrupted = True
        except Exception as exc:
            # The selection itself broke (database or bucket unreachable): report what was
            # done so far, then one line; --traceback shows the whole story.
            if options.get("traceback"):
                raise
            logger.exception("%s aborted", self.command_name, extra={"step": self.command_name})
            summary.interrupted = True
            aborted = exc
        finally:
            progress.close()
        self.report(summary)
        if aborted is not None:
            raise CommandError(
                gettext(
                    "aborted after %(selected)s %(items)s: %(error)s; run the command again to "
                    "resume"
                )
                % {
                    "selected": summary.selected,
                    "items": self.item_label_plural,
                    "error": f"{type(aborted).__name__}: {aborted}",
                },
                returncode=EXIT_FAILED,
            )
        if summary.interrupted:
            raise CommandError(
                gettext("interrupted; run the command again to resume"),
                returncode=EXIT_INTERRUPTED,
            )
        problem = self.problem(summary)
        if problem:
            raise CommandError(problem, returncode=EXIT_FAILED)

    def run(
        self, options: dict[str, Any], params: dict[str, Any], summary: Summary, progress: Progress
    ) -> None:
        """Walk the selection; each item through its service, or each batch to a worker."""

        limit = options["limit"]
        for batch in self.select(options, options["batch_size"]):
            if summary.enqueue:
                if limit is not None:
                    batch = batch[: max(0, limit - summary.worked())]
                if batch:
                    summary.tasks.append(
                        operation_enqueue(operation=self.operation, refs=batch, params=params)
                    )
                    summary.counts["enqueued"] += len(batch)
                    for ref in batch:
                        summary.items.append(
                            {"ref": ref, "outcome": "enqueued", "detail": "", "data": {}}
                        )
                        progress.item_done()
            else:
                for ref in batch:
                    if limit is not None and summary.worked() >= limit:
                        break
                    result = run_item(self.operation, ref, params, dry_run=summary.dry_run)
                    summary.add(ref, result)
                    progress.item_done()
                    self.item_line(progress, ref, result, summary.dry_run)
            progress.batch_done()
            if limit is not None and summary.worked() >= limit:
                summary.limit_reached = True
                return
            release_stale_connections()

    def item_line(self, progress: Progress, ref: Any, result: ItemResult, dry_run: bool) -> None:
        """Failures, dry-run verdicts and drift at verbosity 1; every item at 2."""
        if self.as_json:
            return
        notable = result.outcome == "failed" or dry_run or bool(result.tags)
        if not (self.verbosity >= 2 or (self.verbosity >= 1 and notable)):
            return
        tag: str = "FAILED" if result.outcome == "failed" else result.outcome
        if dry_run and result.outcome == "done":
            tag = "would"
        if result.tags:
            tag = f"{tag} [{','.join(result.tags)}]"
        stream = self.stderr if result.outcome == "failed" else self.stdout
        progress.write(stream, f"{tag} {result.detail}")

    def report(self, summary: Summary) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(summary.as_json(), default=str, sort_keys=False))
        elif self.verbosity > 0 or summary.counts["failed"]:
            self.stdout.write(summary.line())


def release_stale_connections() -> None:
    """Between batches, drop database connections that are broken or past CONN_MAX_AGE, as
    Django does between requests: a long run must survive a MySQL ``wait_timeout``. Never
    inside a transaction (a caller's, or a test's)."""
    if not any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        close_old_connections()


def queryset_batches(queryset: Any, batch_size: int, field: str = "pk") -> Iterator[list[Any]]:
    """Keyset batches of a queryset (see selectors.operations.ids_in_batches)."""

    yield from ids_in_batches(queryset, batch_size=batch_size, field=field)


def chunks(refs: Iterable[Any], batch_size: int) -> Iterator[list[Any]]:
    """Batches of a lazy stream (a bucket listing)."""
    batch: list[Any] = []
    for ref in refs:
        batch.append(ref)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


ASSET_TYPES = [t.value for t in AssetType]
JOB_STATUSES = [s.value for s in JobStatus]
JOB_PROVIDERS = [p.value for p in JobProvider]


def add_listing_argument(parser: CommandParser, help_text: str) -> None:
    parser.add_argument(
        "--listing",
        dest="listing_ids",
        action="extend",
        type=id_list(gettext("listing id")),
        default=[],
        metavar="ID[,ID...]",
        help=help_text,
    )
