"""Presigned GET URLs: byte for byte what botocore makes, at a fraction of the cost."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError

from media_jobs.pipeline import presign

KEYS = [
    "300500/processed/photo/horizontal/large/horizontal-01-IMG_1.jpg",
    "300500/raw/photo/vertical/a b+c~d (1).jpg",
    "x/ção/ü é#?&=%.jpg",
    "plain",
]
CLIENTS = [
    {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},  # path style
    {"endpoint_url": "https://s3.example.com:8443", "region_name": "eu-west-1"},
    {"region_name": "sa-east-1"},  # AWS, virtual host
    {"region_name": "us-east-1"},
]


def _client(token: str | None, **kwargs: str):
    return boto3.client(
        "s3",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret/key+example",
        aws_session_token=token,
        config=Config(signature_version="s3v4"),
        **kwargs,
    )


@pytest.mark.parametrize("kwargs", CLIENTS)
@pytest.mark.parametrize("token", [None, "session/token+=="])
def test_urls_are_botocores(kwargs: dict[str, str], token: str | None) -> None:
    client = _client(token, **kwargs)
    signer = presign.GetUrlSigner(client, "toq-media")
    # two days: the cached signing key must follow the date
    for moment in (datetime(2026, 11, 30, 5, 0, 7, tzinfo=UTC), datetime(2026, 12, 1, 0, 0, 1)):
        moment = moment.replace(tzinfo=UTC)
        with (
            mock.patch(
                "botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)
            ),
            mock.patch.object(presign, "_now", return_value=moment),
        ):
            for key in KEYS:
                want = client.generate_presigned_url(
                    "get_object", Params={"Bucket": "toq-media", "Key": key}, ExpiresIn=900
                )
                assert signer.url(key, 900) == want


def test_a_client_with_credentials_is_not_asked_per_url() -> None:
    """The point of the signer: botocore presigns the probe once, then never again while
    the client has credentials (each of its URLs costs ~0.25 ms; a job page needs 2,500)."""
    client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    signer = presign.GetUrlSigner(client, "toq-media")
    moment = datetime(2026, 11, 30, 5, 0, 7, tzinfo=UTC)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)),
        mock.patch.object(presign, "_now", return_value=moment),
    ):
        want = client.generate_presigned_url(
            "get_object", Params={"Bucket": "toq-media", "Key": KEYS[0]}, ExpiresIn=900
        )
        with mock.patch.object(
            client, "generate_presigned_url", side_effect=AssertionError("botocore presigned")
        ) as botocore_presign:
            assert signer.url(KEYS[0], 900) == want
    assert botocore_presign.call_count == 0


def test_a_client_without_sigv4_is_refused() -> None:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(signature_version="s3"),
    )
    with pytest.raises(ValueError) as refused:
        presign.GetUrlSigner(client, "toq-media")
    assert str(refused.value) == "the client does not presign with SigV4 query parameters"


def test_without_credentials_it_fails_like_botocore(monkeypatch: pytest.MonkeyPatch) -> None:

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    signer = presign.GetUrlSigner(client, "toq-media")
    monkeypatch.setattr(client._request_signer, "_credentials", None)
    with pytest.raises(NoCredentialsError):
        client.generate_presigned_url(
            "get_object", Params={"Bucket": "toq-media", "Key": "k"}, ExpiresIn=60
        )
    with pytest.raises(NoCredentialsError):
        signer.url("k", 60)


def test_the_signing_key_is_derived_once_a_day_and_secret() -> None:
    """Four HMACs derive the day's key; a page of links on one day derives it once, and a
    new day or a rotated secret derives it again."""
    client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    signer = presign.GetUrlSigner(client, "toq-media")
    moment = datetime(2026, 11, 30, 5, 0, 7, tzinfo=UTC)
    with (
        mock.patch.object(presign, "_now", return_value=moment),
        mock.patch.object(presign, "_hmac", wraps=presign._hmac) as derivations,
    ):
        for key in KEYS:
            signer.url(key, 900)
        assert derivations.call_count == 4
        with mock.patch.object(
            presign, "_now", return_value=datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
        ):
            signer.url(KEYS[0], 900)
            signer.url(KEYS[1], 900)
        assert derivations.call_count == 8
        client._request_signer._credentials = Credentials("AKIDEXAMPLE", "rotated/secret")
        signer.url(KEYS[0], 900)
        assert derivations.call_count == 12


def test_a_client_with_an_access_key_but_no_secret_gets_botocores_url_and_ttl() -> None:
    """Incomplete credentials are left to botocore, with the TTL asked for."""
    client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    signer = presign.GetUrlSigner(client, "toq-media")
    client._request_signer._credentials = Credentials("AKIDEXAMPLE", None)
    moment = datetime(2026, 11, 30, 5, 0, 7, tzinfo=UTC)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)),
        mock.patch.object(presign, "_now", return_value=moment),
    ):
        url = signer.url(KEYS[0], 60)
        assert url == client.generate_presigned_url(
            "get_object", Params={"Bucket": "toq-media", "Key": KEYS[0]}, ExpiresIn=60
        )
    assert "&X-Amz-Expires=60&" in url


def test_the_query_is_encoded_once_per_second_ttl_and_credentials() -> None:
    """The query part is the same for every key signed in one second: a page of links
    encodes it once; another TTL (or second, or credentials) encodes it again."""
    client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    signer = presign.GetUrlSigner(client, "toq-media")
    moment = datetime(2026, 11, 30, 5, 0, 7, tzinfo=UTC)
    with (
        mock.patch.object(presign, "_now", return_value=moment),
        mock.patch.object(presign, "_enc", wraps=presign._enc) as encodings,
    ):
        signer.url(KEYS[0], 900)
        once = encodings.call_count
        assert once > 0
        for key in KEYS[1:]:
            signer.url(key, 900)
        assert encodings.call_count == once
        assert "&X-Amz-Expires=60&" in signer.url(KEYS[0], 60)
        assert encodings.call_count == 2 * once


def test_the_signature_date_is_utc_whatever_the_local_time_zone() -> None:
    """A worker whose local time zone is Sao Paulo's (UTC-3) still dates its signatures in
    UTC: a URL dated three hours early would have expired before anyone clicked it."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "BRT3"  # POSIX rule: three hours behind UTC, no tz database needed
    time.tzset()
    try:
        client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
        signer = presign.GetUrlSigner(client, "toq-media")
        before = datetime.now(UTC).replace(microsecond=0)
        url = signer.url("k", 60)
        after = datetime.now(UTC)
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()
    stamp = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    signed = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed <= after


class _CountedMoment(datetime):
    """A clock reading that counts how often it is formatted."""

    formatted = 0

    def strftime(self, format: str) -> str:
        type(self).formatted += 1
        return super().strftime(format)


def test_the_timestamp_is_formatted_once_per_second() -> None:
    client = _client(None, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    signer = presign.GetUrlSigner(client, "toq-media")
    first = _CountedMoment(2026, 11, 30, 5, 0, 7, 1000, tzinfo=UTC)
    same_second = _CountedMoment(2026, 11, 30, 5, 0, 7, 999_000, tzinfo=UTC)
    next_second = _CountedMoment(2026, 11, 30, 5, 0, 8, tzinfo=UTC)
    with mock.patch.object(presign, "_now", side_effect=[first, same_second, next_second]):
        urls = [signer.url(key, 900) for key in KEYS[:3]]
    assert _CountedMoment.formatted == 2
    assert [parse_qs(urlsplit(url).query)["X-Amz-Date"] for url in urls] == [
        ["20261130T050007Z"],
        ["20261130T050007Z"],
        ["20261130T050008Z"],
    ]
