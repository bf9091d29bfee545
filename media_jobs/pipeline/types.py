"""JSON shapes at the edges of the pipeline steps (docs/contract.md §4-§6).

TypedDicts rather than classes: the steps take and return exactly the JSON that the state
machines pass between Lambda functions, so the same dicts cross both engines unchanged.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class AssetRef(TypedDict):
    key: str
    type: str  # an asset type (PHOTO_VERTICAL, ...), or the coarse PHOTO / VIDEO of queue messages


class ProcessingInput(TypedDict):
    jobId: int | str
    listingIdentityId: int | str
    assets: list[AssetRef]
    traceparent: NotRequired[str]


class ValidatedAsset(TypedDict):
    key: str
    type: str
    sourceKey: str
    size: NotRequired[int]
    etag: NotRequired[str]
    # set when validation failed for this asset; the asset is kept, never dropped
    error: NotRequired[str]
    errorCode: NotRequired[str]
    # set on each valid video for the Step Functions Map (handlers/validate.with_video_paths)
    videoInput: NotRequired[str]
    videoOutputPath: NotRequired[str]
    transcodeKey: NotRequired[str]


class ValidationResult(TypedDict):
    jobId: int | str
    listingIdentityId: int | str
    traceparent: NotRequired[str]
    assets: list[ValidatedAsset]
    imageAssets: list[ValidatedAsset]
    videoAssets: list[ValidatedAsset]
    hasImages: bool
    hasVideos: bool
    videoInput: NotRequired[str]  # s3://bucket/key of the first video (MediaConvert input)
    videoOutputPath: NotRequired[str]  # s3://bucket/<listing>/processed/<segment>/original/


class GeneratedAsset(TypedDict):
    key: str
    type: str
    sourceKey: str


class AssetError(TypedDict):
    sourceKey: str
    errorCode: str
    errorMessage: str


class BranchBody(TypedDict):
    status: str  # "SUCCESS"
    generatedAssets: list[GeneratedAsset]
    errors: list[AssetError]


class BranchResult(TypedDict):
    body: BranchBody


class ConsolidatedOutput(TypedDict):
    rawKey: str
    processedKey: str
    thumbnailKey: str
    outputs: dict[str, str]
    errorCode: str
    errorMessage: str


class ZipBody(TypedDict):
    zipKey: str
    assetsZipped: int
    zipBundles: list[str]
    zipSizeBytes: int
    unzippedSizeBytes: int


JSON = dict[str, Any]
