"""The S3 adapter of the storage port (AWS S3 or any S3-compatible endpoint).

Credentials come from boto3's usual chain (environment variables, profile, instance or
Lambda role). Retries are bounded and back off on throttling and 5xx ("standard" mode), and
every call has connect/read timeouts, so a step fails in bounded time when S3 is down and the
engine's own retry takes over.

Long on purpose: one adapter of the storage port; its multipart upload (part sizing,
two parts in flight, abort) is most of it and is only ever used through the port.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING, Any, BinaryIO

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from media_jobs.pipeline.aws import ClientOptions, shared_client
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.presign import GetUrlSigner
from media_jobs.pipeline.storage import ObjectInfo, ObjectNotFound, check_key_common

if TYPE_CHECKING:  # the boto3 stubs are a development dependency
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadOutputTypeDef,
        GetObjectOutputTypeDef,
        PutObjectOutputTypeDef,
    )

MIB = 1024**2
GIB = 1024**3
# S3 limits: every part but the last >= 5 MiB, parts <= 5 GiB, at most 10,000 parts.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * GIB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
# The part size doubles after every PARTS_PER_STEP parts (see part_size_for).
PARTS_PER_STEP = 1000
# Parts of one streamed upload sent at the same time (see S3MultipartWriter).
PARTS_IN_FLIGHT = 2

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_RANGE_NOT_SATISFIABLE = {"416", "InvalidRange"}


def part_size_for(part_number: int, base_part_size: int = DEFAULT_PART_SIZE) -> int:
    """Size of part ``part_number`` (1-based) of a streamed upload of unknown length.

    The size doubles every 1000 parts (capped at 5 GiB), so the 10,000-part limit is never
    the constraint: with 8 MiB the first 1000 parts hold 7.8 GiB, 3000 parts 54.7 GiB, and
    10,000 parts more than the 5 TiB S3 object limit, while a small upload still uses small
    parts (memory stays bounded by one part).
    """
    if part_number < 1:
        raise ValueError("part numbers start at 1")
    if part_number > MAX_PARTS:
        raise ValueError(f"S3 allows at most {MAX_PARTS} parts")
    return min(MAX_PART_SIZE, base_part_size << ((part_number - 1) // PARTS_PER_STEP))


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_not_found(error: ClientError) -> bool:
    """A missing key; a missing bucket is a configuration error and is not "not found"."""
    code = _error_code(error)
    if code == "NoSuchBucket":
        return False
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _NOT_FOUND_CODES or status == 404


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


class _StreamingBodyReader(io.RawIOBase):
    """botocore's StreamingBody as a raw binary file (so it can be buffered and closed)."""

    def __init__(self, body: StreamingBody) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def object_args(content_type: str | None, metadata: dict[str, str] | None) -> dict[str, Any]:
    """The PutObject / CreateMultipartUpload / upload_file arguments every write shares."""
    args: dict[str, Any] = {}
    if content_type:
        args["ContentType"] = content_type
    if metadata:
        args["Metadata"] = dict(metadata)
    return args


class S3MultipartWriter:
    """A streamed upload that appears only on ``complete()``.

    Fewer bytes than one part become a single PutObject on ``complete()``; otherwise parts go
    up as they fill (their size grows, see ``part_size_for``) and CompleteMultipartUpload
    makes the object visible. Up to ``PARTS_IN_FLIGHT`` parts are sent at once by a small
    thread pool: one part's upload (signing, sending, the store's checksum and write) then
    overlaps the next one's, instead of the writer waiting for each answer. ``write`` blocks
    while that many are in flight, so memory stays bounded by the buffer plus those parts.
    A failed part is raised by the next ``write`` or by ``complete``. ``abort()`` cancels the
    upload: the previous object under the key, if any, stays untouched.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        content_type: str | None,
        metadata: dict[str, str] | None,
        base_part_size: int,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._extra = object_args(content_type, metadata)
        self._base_part_size = base_part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts_started = 0
        self._parts_in_flight = PARTS_IN_FLIGHT
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[Future[CompletedPartTypeDef]] = set()
        self._parts: list[CompletedPartTypeDef] = []
        self._size = 0
        self._closed = False

    @property
    def parts_uploaded(self) -> int:
        """Parts handed to S3 so far (sent, or being sent)."""
        return self._parts_started

    def _next_part_size(self) -> int:
        return part_size_for(self._parts_started + 1, self._base_part_size)

    def _send_part(self, upload_id: str, number: int, data: bytes) -> CompletedPartTypeDef:
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _collect(self, *, until_at_most: int) -> None:
        """Wait until at most ``until_at_most`` parts are in flight; raise a failed part."""
        while len(self._in_flight) > until_at_most:
            done, self._in_flight = wait(self._in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                self._parts.append(future.result())

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, **self._extra
            )
            self._upload_id = created["UploadId"]
        upload_id = self._upload_id
        self._collect(until_at_most=self._parts_in_flight - 1)
        self._parts_started += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._parts_in_flight, thread_name_prefix="s3-part")
        self._in_flight.add(
            self._pool.submit(self._send_part, upload_id, self._parts_started, data)
        )

    def _stop_pool(self) -> None:
        if self._pool is not None:
            # Waits for the parts being sent; none is ever queued (one thread per part in
            # flight), so there is nothing to cancel.
            self._pool.shutdown()
            self._pool = None
        self._in_flight = set()

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a completed or aborted upload")
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self._next_part_size():
            size = self._next_part_size()
            # One copy of the part (a slice of the bytearray would be a second, transient one)
            with memoryview(self._buffer) as view:
                part = bytes(view[:size])
            del self._buffer[:size]
            self._upload_part(part)
        return len(data)

    def complete(self) -> ObjectInfo:
        if self._closed:
            raise ValueError("upload already completed or aborted")
        response: PutObjectOutputTypeDef | CompleteMultipartUploadOutputTypeDef
        try:
            if self._upload_id is None:
                response = self._client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), **self._extra
                )
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                self._collect(until_at_most=0)
                self._stop_pool()
                response = self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={
                        "Parts": sorted(self._parts, key=lambda part: part["PartNumber"])
                    },
                )
        except BaseException:
            # keep the original error; a failing abort leaves an upload for the lifecycle rule
            with suppress(Exception):
                self.abort()
            raise
        self._buffer = bytearray()
        self._closed = True
        return ObjectInfo(
            key=self._key,
            size=self._size,
            etag=_etag(response.get("ETag")),
            content_type=self._extra.get("ContentType"),
            metadata=dict(self._extra.get("Metadata", {})),
        )

    def abort(self) -> None:
        """Idempotent; safe after a failed write or complete. Parts still being sent are
        waited for first, so none lands after the abort."""
        self._buffer = bytearray()
        self._stop_pool()
        if self._closed:
            return
        self._closed = True
        if self._upload_id is not None:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )

    def __enter__(self) -> S3MultipartWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.complete()


class S3Storage:
    """Objects in one S3 bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_retries: int = 4,
        connect_timeout_s: float = 5,
        read_timeout_s: float = 60,
        part_size: int = DEFAULT_PART_SIZE,
        client: S3Client | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes (5 MiB)")
        self.bucket = bucket
        self.part_size = part_size
        self.list_page_size = 1000  # S3's maximum; tests lower it to cross pages
        # Set by the first successful bucket check: every later 404 is a missing key.
        self._bucket_seen = False
        self._signer: GetUrlSigner | None = None
        self.client = client or shared_client(
            "s3",
            ClientOptions(
                endpoint_url=endpoint_url,
                region=region,
                max_retries=max_retries,
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=read_timeout_s,
            ),
        )

    @classmethod
    def from_config(cls, config: PipelineConfig, **options: Any) -> S3Storage:
        return cls(
            config.bucket, endpoint_url=config.s3_endpoint_url, region=config.region, **options
        )

    @staticmethod
    def check_key(key: str) -> None:
        """S3's key rules: raise InvalidKey before botocore fails deep inside a request
        (or S3 answers KeyTooLongError)."""
        check_key_common(key)

    def head(self, key: str) -> ObjectInfo:
        self.check_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _is_not_found(error):
                # HEAD answers have no body, so a missing bucket is a bare 404 as well: check
                # (only on this error path) so that a wrong bucket fails the step loudly
                # instead of marking every asset OBJECT_NOT_FOUND.
                self._check_bucket_exists()
                raise ObjectNotFound(key) from error
            raise
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=_etag(response.get("ETag")),
            last_modified=response.get("LastModified"),
            content_type=response.get("ContentType"),
            metadata=dict(response.get("Metadata") or {}),
        )

    def _check_bucket_exists(self) -> None:
        """Raise when the bucket is missing; a role without ListBucket (403) gets the benefit
        of the doubt, since it cannot see a missing key as 404 anyway.

        Checked once per storage object: a first run of the thumbnails step misses on every
        photo's resume check, and the bucket does not vanish between two photos.
        """
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 403:
                raise
        self._bucket_seen = True

    def _get(self, key: str, **options: Any) -> GetObjectOutputTypeDef:
        self.check_key(key)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, **options)
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectNotFound(key) from error
            raise

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A buffered, non-seekable stream of the object body."""
        response = self._get(key)  # raises ObjectNotFound now, not on first read
        reader = io.BufferedReader(_StreamingBodyReader(response["Body"]), buffer_size=1 * MIB)

        @contextmanager
        def opened() -> Iterator[BinaryIO]:
            try:
                yield reader
            finally:
                reader.close()

        return opened()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``start``..``start+length-1``; shorter (or empty) past the end."""
        if length <= 0:
            return b""
        try:
            response = self._get(key, Range=f"bytes={start}-{start + length - 1}")
        except ClientError as error:
            if _error_code(error) in _RANGE_NOT_SATISFIABLE:
                return b""
            raise
        with response["Body"] as body:
            return body.read()

    def write(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        self.check_key(key)
        extra = object_args(content_type, metadata)
        response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=_etag(response.get("ETag")),
            content_type=content_type,
            metadata=dict(metadata or {}),
        )

    def write_file(
        self,
        key: str,
        path: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Managed upload: multipart with parallel parts above the part size."""
        self.check_key(key)
        extra = object_args(content_type, metadata)
        transfer = TransferConfig(
            multipart_threshold=self.part_size,
            multipart_chunksize=self.part_size,
            max_concurrency=4,
        )
        self.client.upload_file(path, self.bucket, key, ExtraArgs=extra, Config=transfer)
        return self.head(key)

    def open_multipart(
        self,
        key: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        part_size: int | None = None,
    ) -> S3MultipartWriter:
        self.check_key(key)
        base = part_size or self.part_size
        if base < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes (5 MiB)")
        return S3MultipartWriter(
            self.client,
            self.bucket,
            key,
            content_type=content_type,
            metadata=metadata,
            base_part_size=base,
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Keys under ``prefix`` in key order; metadata and content type are not listed."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page_size}
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    etag=_etag(item.get("ETag")),
                    last_modified=item.get("LastModified"),
                )

    def delete(self, key: str) -> None:
        self.check_key(key)
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def presigned_url(self, key: str, ttl_seconds: int) -> str | None:
        """The same URL as botocore's ``generate_presigned_url``, ~8x cheaper (a page of
        500 assets presigns ~2,500 links): see ``media_jobs.pipeline.presign``."""
        if self._signer is None:
            self._signer = GetUrlSigner(self.client, self.bucket)
        return self._signer.url(key, ttl_seconds)
