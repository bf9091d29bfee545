"""Presigned GET URLs (AWS Signature Version 4, query string) without botocore's per-call work.

``client.generate_presigned_url`` costs ~0.25 ms a URL (parameter validation, endpoint rules,
event hooks, a request object); the admin's job page of a 500-asset listing needs ~2,500 of
them, which alone took ~0.8 s. The URL's base (scheme, host, addressing style) is taken once
from botocore itself, by presigning a probe key; after that each URL is what SigV4 defines:
a canonical request, its SHA-256, and an HMAC with the day's signing key (cached). The
credentials are read from the client at each call, so rotated ones (a role) are used.
A test compares the URLs with botocore's, byte for byte, for several endpoints and keys.

Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

if TYPE_CHECKING:  # the boto3 stubs are a development dependency
    from botocore.credentials import Credentials, ReadOnlyCredentials
    from mypy_boto3_s3 import S3Client

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_PROBE_KEY = "presign-probe"


def _now() -> datetime:
    return datetime.now(UTC)


class GetUrlSigner:
    """``url(key, ttl)``: the same URL botocore's ``generate_presigned_url("get_object")``
    returns for that key at that second, for a client that signs with SigV4 ("s3v4")."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        # Only the probe's path, host and credential scope are read, never its expiry.
        probe = urlsplit(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}
            )
        )
        if not probe.path.endswith("/" + _PROBE_KEY) or "X-Amz-Signature=" not in probe.query:
            raise ValueError("the client does not presign with SigV4 query parameters")
        self._prefix = f"{probe.scheme}://{probe.netloc}"
        self._path = probe.path[: -len(_PROBE_KEY)]  # "/bucket/" (path style) or "/"
        self._host = probe.netloc
        # The signing region as botocore resolved it: the credential scope's third part.
        scope = parse_qs(probe.query)["X-Amz-Credential"][0].split("/")
        self._region, self._service = scope[2], scope[3]
        # One entry each (the current day, second, credentials): nothing piles up.
        self._keys: dict[tuple[str, str], bytes] = {}
        self._queries: dict[tuple[Any, ...], tuple[str, str, str]] = {}
        self._stamps: dict[int, str] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            key = _hmac(("AWS4" + secret).encode(), day)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._keys = {(secret, day): key}  # one day, one secret: nothing piles up
            cached = key
        return cached

    def _query(
        self, credentials: ReadOnlyCredentials, stamp: str, ttl_seconds: int
    ) -> tuple[str, str, str]:
        """(canonical query, URL query, scope) for one second: the same for every key,
        so a page of links encodes them once."""
        cache_key = (credentials.access_key, credentials.token, stamp, ttl_seconds)
        cached = self._queries.get(cache_key)
        if cached is not None:
            return cached
        scope = f"{stamp[:8]}/{self._region}/{self._service}/aws4_request"
        params = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{credentials.access_key}/{scope}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(int(ttl_seconds)),
            "X-Amz-SignedHeaders": "host",
        }
        if credentials.token:
            params["X-Amz-Security-Token"] = credentials.token
        # Signed sorted; the URL keeps botocore's order (the token after SignedHeaders).
        canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))
        query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in params.items())
        value = (canonical, query, scope)
        self._queries = {cache_key: value}
        return value

    def _stamp(self, moment: datetime) -> str:
        """SigV4's timestamp, formatted once per second."""
        second = int(moment.timestamp())
        stamp = self._stamps.get(second)
        if stamp is None:
            stamp = moment.strftime("%Y%m%dT%H%M%SZ")
            self._stamps = {second: stamp}
        return stamp

    def url(self, key: str, ttl_seconds: int) -> str:
        # The signer's credentials, read where botocore itself reads them; the client stubs
        # leave botocore's private request signer out.
        source: Credentials | None = self._client._request_signer._credentials  # type: ignore[attr-defined]
        credentials = source.get_frozen_credentials() if source is not None else None
        if (
            credentials is None or credentials.access_key is None or credentials.secret_key is None
        ):  # no credentials: botocore raises its own NoCredentialsError
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=ttl_seconds
            )
        stamp = self._stamp(_now())
        canonical_query, query, scope = self._query(credentials, stamp, ttl_seconds)
        path = self._path + quote(key)  # SigV4 keeps "/" (quote's default) and "~" (never quoted)
        canonical = "\n".join(
            ["GET", path, canonical_query, f"host:{self._host}\n", "host", UNSIGNED_PAYLOAD]
        )
        to_sign = "\n".join(
            [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signing_key = self._signing_key(credentials.secret_key, stamp[:8])
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self._prefix}{path}?{query}&X-Amz-Signature={signature}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _enc(value: str) -> str:
    return quote(value, safe="-_.~")
