"""Pure planning of a processing workflow: which parts a validated job fans out into, what
each part gets, and how their results merge into the ``parallelResults`` the state machine's
Parallel state would produce. No database, no broker: the tasks call these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import STEP_POSTERS, STEP_THUMBNAILS, STEP_TRANSCODE


def iso_time(moment: datetime | None) -> str:
    """Step Functions' ``$$.Execution.StartTime`` format: ISO 8601, milliseconds, Z."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_parts(validation: dict[str, Any], chunk_size: int) -> list[str]:
    """The parallel parts of a validated job: photo chunks, then one poster and one
    transcode per video."""
    images = validation.get("imageAssets") or []
    videos = validation.get("videoAssets") or []
    parts = [
        f"{STEP_THUMBNAILS}:{i}" for i in range(0, (len(images) + chunk_size - 1) // chunk_size)
    ]
    parts += [f"{STEP_POSTERS}:{i}" for i in range(len(videos))]
    parts += [f"{STEP_TRANSCODE}:{i}" for i in range(len(videos))]
    return parts


def part_input(validation: dict[str, Any], part: str, chunk_size: int) -> dict[str, Any]:
    step, index = part.split(":")
    number = int(index)
    if step == STEP_THUMBNAILS:
        chunk = (validation.get("imageAssets") or [])[
            number * chunk_size : (number + 1) * chunk_size
        ]
        return {**validation, "imageAssets": chunk}
    video = (validation.get("videoAssets") or [])[number]
    return {**validation, "videoAssets": [video]}


def merge_parallel_results(validation: dict[str, Any], parts: dict[str, Any]) -> list[Any]:
    """The ``parallelResults`` list the state machine's Parallel state would produce: one
    entry per branch (thumbnails; poster frames or the Pass result; transcodes or the Pass
    result), the chunks' bodies concatenated in the validated assets' order, and the
    transcodes as the Map's list of one result per video."""

    def ordered(step: str) -> list[Any]:
        keys = sorted(
            (p for p in parts if p.startswith(step + ":")), key=lambda p: int(p.split(":")[1])
        )
        return [parts[k] for k in keys]

    def merged_body(results: list[Any]) -> dict[str, Any]:
        generated: list[Any] = []
        errors: list[Any] = []
        for result in results:
            body = (result or {}).get("body") or {}
            generated.extend(body.get("generatedAssets") or [])
            errors.extend(body.get("errors") or [])
        return {"body": {"status": "SUCCESS", "generatedAssets": generated, "errors": errors}}

    branches: list[Any] = [merged_body(ordered(STEP_THUMBNAILS))]
    if validation.get("hasVideos"):
        branches.append(merged_body(ordered(STEP_POSTERS)))
        branches.append(ordered(STEP_TRANSCODE))
    else:
        branches.append({"status": "no_videos_to_thumbnail"})
        branches.append({"status": "no_videos_to_process"})
    return branches


def part_summary(result: dict[str, Any]) -> dict[str, Any]:
    body = result.get("body") or {}
    return {
        "outputs": len(body.get("generatedAssets") or []),
        "errors": len(body.get("errors") or []),
    }
