"""moto's S3 server with a streaming CompleteMultipartUpload, for the ZIP benchmark.

Stock moto (5.2) completes a multipart upload in memory: it concatenates every part into one
``bytearray``, copies it to ``bytes``, and for its default checksum appends the whole object
to a second buffer and copies that too, so a 4 GiB ZIP would need ~16 GB in the server (and
its time would count against the step). This server patches only that: the parts are copied
block by block from their spool files into the new object's spool file (moto's own kind of
buffer: a temporary file beyond a few MB), and the object's checksum is computed on the way
(the same value moto computes). Every request the step and the plain copy make is served by
moto's own code, started as the tests start it (tests/support/moto_main.py).

    python -m bench.moto_lean -H 127.0.0.1 -p 5000      # the arguments of moto_server
"""

from __future__ import annotations

import base64
import binascii
import codecs
import tempfile
from typing import Any

from moto.s3 import models, utils
from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML

COPY_BLOCK = 16 * 1024 * 1024


class _Spooled:
    """The value of a completed upload: its parts, in order, in one spool file."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(models.get_s3_default_key_buffer_size())
        self.size = 0

    def __len__(self) -> int:
        return self.size


def _streams_crc32(algorithm: str | None, checksum_type: str | None) -> bool:
    """True when moto's checksum of the whole object is a CRC32 (CRC32, or CRC64NVME without
    awscrt, which moto then computes as CRC32): chained block by block, it is the same."""
    builder = models.MultipartChecksumBuilder(algorithm, checksum_type)
    return builder.checksum_type == "FULL_OBJECT" and (
        builder.checksum_algorithm == "CRC32"
        or (builder.checksum_algorithm == "CRC64NVME" and not utils.HAS_CRT)
    )


def _complete(self: Any, body: Any) -> tuple[Any, str, Any]:
    """``FakeMultipart.complete`` with moto's checks, without joining the parts in memory."""
    algorithm = self.metadata.get("x-amz-checksum-algorithm")
    checksum_type = self.metadata.get("x-amz-checksum-type")
    stream_crc = _streams_crc32(algorithm, checksum_type)
    builder = models.MultipartChecksumBuilder(algorithm, checksum_type)
    decode_hex = codecs.getdecoder("hex_codec")
    md5s = bytearray()
    value = _Spooled()
    crc = 0
    count = 0
    last = None
    for number, etag in body:
        part = self.parts.get(number)
        part_etag = part.etag.replace('"', "") if part is not None else None
        if part is None or part_etag != etag.replace('"', ""):
            raise InvalidPart()
        if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
            raise EntityTooSmall()
        md5s.extend(decode_hex(part_etag)[0])
        with part.lock:
            part._value_buffer.seek(0)
            while block := part._value_buffer.read(COPY_BLOCK):
                value.file.write(block)
                if stream_crc:
                    crc = binascii.crc32(block, crc)
        value.size += part.contentsize
        if not stream_crc:
            builder.addPart(part.value)
        last = part
        count += 1
    if count == 0:
        raise MalformedXML
    full = models.md5_hash()
    full.update(bytes(md5s))
    if stream_crc:
        checksum = (builder.checksum_type, base64.b64encode(crc.to_bytes(4, "big")).decode(), 1)
    else:
        checksum = builder.build()
    return value, f"{full.hexdigest()}-{count}", checksum


_stock_value = models.FakeKey.value


def _set_value(self: Any, new_value: Any) -> None:
    """A completed upload's spool file becomes the key's buffer (no copy); else moto's way."""
    if not isinstance(new_value, _Spooled):
        _stock_value.fset(self, new_value)
        return
    self._value_buffer.close()
    self._value_buffer = new_value.file
    self.contentsize = new_value.size


def patch() -> None:
    models.FakeMultipart.complete = _complete
    models.FakeKey.value = property(_stock_value.fget, _set_value)


def main(argv: list[str] | None = None) -> None:
    patch()
    # After patch(): moto's server imports the patched models. The tests' server, so the
    # service folders are listed once here too.
    from tests.support.moto_main import main as serve  # noqa: PLC0415

    serve(argv)


if __name__ == "__main__":
    main()
