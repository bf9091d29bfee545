"""Consolidation parity with the real Go consolidate (projeto-toq/toq_server,
``aws/lambdas/go_src/cmd/consolidate/main.go`` + ``internal/core/service/consolidate/
asset_mapper.go``).

For each scenario the table below spells out what the Go pipeline reports - status, the
run's error code, and per raw asset processedKey, thumbnailKey, the names in ``outputs``
and errorCode - worked out by reading the Go code for that listing (its video poster key,
its fire-and-forget MediaConvert task, VALIDATION_ERROR for any validation problem,
THUMBNAIL_PROCESSING_FAILED for any photo failure). The project's consolidate, given what
its own steps produce for the same listing, must report the same, except for the deliberate
differences named in ``DIFFERENCES``; each of them is explained in docs/workers.md,
"Differences from the Go system" (a test checks that every one is there).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from media_jobs.pipeline.consolidate import consolidate

ROOT = Path(__file__).resolve().parents[2]
L = 4711
PHOTO_H = f"{L}/raw/photo/horizontal/horizontal-01-a.jpg"
PHOTO_V = f"{L}/raw/photo/vertical/vertical-01-b.jpg"
MISSING = f"{L}/raw/photo/vertical/vertical-02-never.jpg"
CORRUPT = f"{L}/raw/photo/vertical/vertical-03-broken.jpg"
VIDEO = f"{L}/raw/video/horizontal/horizontal-01-tour.mp4"
BROKEN_VIDEO = f"{L}/raw/video/vertical/vertical-01-broken.mp4"
SIZES = ("thumbnail", "small", "medium", "large")


def derivative(raw: str, size: str, ext: str = "jpg") -> str:
    segment, name = raw.split("/raw/")[1].rsplit("/", 1)
    return f"{L}/processed/{segment}/{size}/{name.rsplit('.', 1)[0]}.{ext}"


def photo_result(raw: str, kind: str) -> dict[str, Any]:
    return {
        "processedKey": derivative(raw, "large"),
        "thumbnailKey": derivative(raw, "thumbnail"),
        "outputs": sorted(f"{size}_{kind}" for size in SIZES),
        "errorCode": "",
    }


FAILED = {"processedKey": "", "thumbnailKey": "", "outputs": [], "errorCode": None}

# What the Go pipeline reports. Video keys: its poster is processed/.../thumbnail/<raw file
# name> (the same as ours for an .mp4), and its MediaConvert task has no body, so the
# poster is the video's only output and its processedKey.
GO: dict[str, dict[str, Any]] = {
    "photos only": {
        "status": "SUCCEEDED",
        "error.code": None,
        "assets": {
            PHOTO_H: photo_result(PHOTO_H, "photo_horizontal"),
            PHOTO_V: photo_result(PHOTO_V, "photo_vertical"),
        },
    },
    "photos + video": {
        "status": "SUCCEEDED",
        "error.code": None,
        "assets": {
            PHOTO_H: photo_result(PHOTO_H, "photo_horizontal"),
            VIDEO: {
                "processedKey": derivative(VIDEO, "thumbnail", "mp4"),
                "thumbnailKey": derivative(VIDEO, "thumbnail", "mp4"),
                "outputs": ["thumbnail_video_horizontal"],
                "errorCode": "",
            },
        },
    },
    "a validation error only": {
        "status": "SUCCEEDED",
        "error.code": None,
        "assets": {
            PHOTO_H: photo_result(PHOTO_H, "photo_horizontal"),
            MISSING: {**FAILED, "errorCode": "VALIDATION_ERROR"},
        },
    },
    "a branch error": {
        "status": "PARTIAL_SUCCESS",
        "error.code": "DERIVATIVE_ERRORS_DETECTED",
        "assets": {
            PHOTO_H: photo_result(PHOTO_H, "photo_horizontal"),
            CORRUPT: {**FAILED, "errorCode": "THUMBNAIL_PROCESSING_FAILED"},
        },
    },
    # MediaConvert's job is created and not awaited: only the poster branch reports.
    "a corrupt video": {
        "status": "PARTIAL_SUCCESS",
        "error.code": "DERIVATIVE_ERRORS_DETECTED",
        "assets": {
            PHOTO_H: photo_result(PHOTO_H, "photo_horizontal"),
            BROKEN_VIDEO: {**FAILED, "errorCode": "VIDEO_THUMBNAIL_FAILED"},
        },
    },
}

# The deliberate differences: id -> (scenario, asset, member, the project's value).
DIFFERENCES: dict[str, list[tuple[str, str, str, Any]]] = {
    # the transcode is awaited (.sync) and reported as the video's original output, the
    # best one: processedKey is the MP4, not the poster JPEG
    "video-original-output": [
        ("photos + video", VIDEO, "processedKey", derivative(VIDEO, "original", "mp4")),
        (
            "photos + video",
            VIDEO,
            "outputs",
            ["original_video_horizontal", "thumbnail_video_horizontal"],
        ),
    ],
    # a video whose transcode failed is reported failed with that code (the last branch's
    # error wins, as in Go); Go never learns that MediaConvert failed
    "transcode-failure-reported": [
        ("a corrupt video", BROKEN_VIDEO, "errorCode", "VIDEO_TRANSCODE_FAILED"),
    ],
    # precise codes (docs/error-codes.md) instead of the generic ones
    "precise-error-codes": [
        ("a validation error only", MISSING, "errorCode", "OBJECT_NOT_FOUND"),
        ("a branch error", CORRUPT, "errorCode", "CORRUPT_IMAGE"),
    ],
}
# Differences in members the tables do not compare (failureReason, error.message and
# error.details, outputs order, traceparent when empty); documented with the others.
UNTABULATED = (
    "failure-reason-and-details",
    "outputs-order",
    "traceparent-always-present",
)


def asset(raw: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"key": raw, "type": kind, "sourceKey": raw, "size": 1000, "etag": "e", **extra}


def body(generated: list[dict[str, Any]], errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"body": {"status": "SUCCESS", "generatedAssets": generated, "errors": errors}}


def photo_derivatives(raw: str, kind: str) -> list[dict[str, Any]]:
    return [{"key": derivative(raw, s), "type": kind, "sourceKey": raw} for s in SIZES]


NO_VIDEOS = [{"status": "no_videos_to_thumbnail"}, {"status": "no_videos_to_process"}]


def project_inputs(scenario: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The validated assets and parallelResults the project's own steps give."""
    if scenario == "photos only":
        return (
            [asset(PHOTO_H, "PHOTO_HORIZONTAL"), asset(PHOTO_V, "PHOTO_VERTICAL")],
            [
                body(
                    photo_derivatives(PHOTO_H, "PHOTO_HORIZONTAL")
                    + photo_derivatives(PHOTO_V, "PHOTO_VERTICAL"),
                    [],
                ),
                *NO_VIDEOS,
            ],
        )
    if scenario == "photos + video":
        poster = derivative(VIDEO, "thumbnail", "mp4")
        mp4 = derivative(VIDEO, "original", "mp4")
        return (
            [asset(PHOTO_H, "PHOTO_HORIZONTAL"), asset(VIDEO, "VIDEO_HORIZONTAL")],
            [
                body(photo_derivatives(PHOTO_H, "PHOTO_HORIZONTAL"), []),
                body([{"key": poster, "type": "VIDEO_THUMBNAIL", "sourceKey": VIDEO}], []),
                [body([{"key": mp4, "type": "VIDEO_TRANSCODE", "sourceKey": VIDEO}], [])],
            ],
        )
    if scenario == "a validation error only":
        return (
            [
                asset(PHOTO_H, "PHOTO_HORIZONTAL"),
                asset(
                    MISSING,
                    "PHOTO_VERTICAL",
                    error=f"raw object {MISSING!r} does not exist",
                    errorCode="OBJECT_NOT_FOUND",
                ),
            ],
            [body(photo_derivatives(PHOTO_H, "PHOTO_HORIZONTAL"), []), *NO_VIDEOS],
        )
    if scenario == "a branch error":
        error = {"sourceKey": CORRUPT, "errorCode": "CORRUPT_IMAGE", "errorMessage": "truncated"}
        return (
            [asset(PHOTO_H, "PHOTO_HORIZONTAL"), asset(CORRUPT, "PHOTO_VERTICAL")],
            [body(photo_derivatives(PHOTO_H, "PHOTO_HORIZONTAL"), [error]), *NO_VIDEOS],
        )
    if scenario == "a corrupt video":
        poster_error = {
            "sourceKey": BROKEN_VIDEO,
            "errorCode": "VIDEO_THUMBNAIL_FAILED",
            "errorMessage": "moov atom not found",
        }
        transcode_error = {
            "sourceKey": BROKEN_VIDEO,
            "errorCode": "VIDEO_TRANSCODE_FAILED",
            "errorMessage": "the video could not be transcoded: ...",
        }
        return (
            [asset(PHOTO_H, "PHOTO_HORIZONTAL"), asset(BROKEN_VIDEO, "VIDEO_VERTICAL")],
            [
                body(photo_derivatives(PHOTO_H, "PHOTO_HORIZONTAL"), []),
                body([], [poster_error]),
                [body([], [transcode_error])],
            ],
        )
    raise AssertionError(scenario)


def expected_for_project(scenario: str) -> dict[str, Any]:
    expected = copy.deepcopy(GO[scenario])
    for changes in DIFFERENCES.values():
        for where, raw, member, value in changes:
            if where == scenario:
                expected["assets"][raw][member] = value
    return expected


def summary(result: dict[str, Any]) -> dict[str, Any]:
    body = result["body"]
    return {
        "status": body["status"],
        "error.code": (body["error"] or {}).get("code"),
        "assets": {
            o["rawKey"]: {
                "processedKey": o["processedKey"],
                "thumbnailKey": o["thumbnailKey"],
                "outputs": sorted(o["outputs"]),
                "errorCode": o["errorCode"],
            }
            for o in body["outputs"]
        },
    }


@pytest.mark.parametrize("scenario", list(GO))
def test_consolidation_matches_the_go_system_except_where_documented(scenario: str) -> None:
    assets, parallel_results = project_inputs(scenario)
    result = consolidate(
        {"jobId": 1, "listingIdentityId": L, "assets": assets, "parallelResults": parallel_results}
    )
    assert summary(result) == expected_for_project(scenario)


def test_every_scenario_is_go_parity_where_no_difference_applies() -> None:
    """The tables are not all differences: most members of most scenarios are Go's own."""
    touched = {(s, raw, m) for changes in DIFFERENCES.values() for s, raw, m, _ in changes}
    compared = {
        (scenario, raw, member)
        for scenario, table in GO.items()
        for raw, members in table["assets"].items()
        for member in members
    }
    assert len(compared - touched) >= 4 * len(compared) // 5


def test_every_difference_is_documented() -> None:
    docs = (ROOT / "docs/workers.md").read_text()
    section = docs.split("## Differences from the Go system", 1)
    assert len(section) == 2, "docs/workers.md has no 'Differences from the Go system'"
    documented = set(re.findall(r"`diff:([a-z0-9-]+)`", section[1]))
    assert set(DIFFERENCES) | set(UNTABULATED) <= documented
