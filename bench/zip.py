"""Benchmark 2: the listing ZIP of 1 GiB of raw media in the S3 test server.

Contenders, each in a process of its own so its peak RSS is its own:
(project) ``media_jobs.pipeline.zipper.create_zip_bundle`` (streamed, multipart, media STORED);
(d) a plain streaming copy of the same objects, one after the other, into one multipart
    object through the same server: the I/O floor the ZIP step cannot beat;
(e) the Go system's approach redone in Python: the whole archive built in memory with
    ``zipfile`` (DEFLATE for everything), then one PutObject.

Targets: the project's peak RSS <= 200 MB; its throughput >= 0.7 x (d); >= 3 x faster than (e).
The first archive is downloaded and checked with ``zipfile.testzip`` (entries, CRCs, methods).

    python -m bench.zip --runs 1 --total-mib 128 [--smoke]
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    ROOT,
    BenchResult,
    Target,
    base_parser,
    finish,
    load_average,
    ratio,
    result_path,
)
from bench.services import REGION, moto_server, new_bucket

MB = 1_000_000
MIB = 1024**2
LISTING = 770001
PART_SIZE = 8 * MIB  # the project's default part size, used by (d) too
COPY_CHUNK = 1 * MIB
JPEG_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
MP4_HEADER = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


@dataclass(frozen=True)
class RawObject:
    key: str
    size: int
    kind: str  # jpeg, mp4, pdf


def plan_objects(total_bytes: int, count: int) -> list[RawObject]:
    """~36% JPEG-like, ~62% MP4-like (incompressible), the rest compressible PDFs."""
    pdfs = max(1, count // 40)
    videos = max(1, count * 45 // 200)
    photos = count - pdfs - videos
    photo_size = total_bytes * 36 // 100 // photos
    video_size = total_bytes * 62 // 100 // videos
    pdf_size = (total_bytes - photo_size * photos - video_size * videos) // pdfs
    objects = []
    for i in range(photos):
        name = f"horizontal-{i + 1:03d}-IMG_{2000 + i}.jpg"
        objects.append(RawObject(f"{LISTING}/raw/photo/horizontal/{name}", photo_size, "jpeg"))
    for i in range(videos):
        name = f"horizontal-{i + 1:03d}-MVI_{3000 + i}.mp4"
        objects.append(RawObject(f"{LISTING}/raw/video/horizontal/{name}", video_size, "mp4"))
    for i in range(pdfs):
        name = f"doc-{i + 1:02d}-floorplan.pdf"
        objects.append(RawObject(f"{LISTING}/raw/project/doc/{name}", pdf_size, "pdf"))
    return objects


def object_bytes(obj: RawObject, seed: int) -> bytes:
    if obj.kind == "pdf":
        lines = []
        length = 0
        page = 0
        while length < obj.size:
            line = (
                f"{page} 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Contents {page + 1000} 0 R >> endobj % listing {LISTING} floor {seed}\n"
            )
            lines.append(line)
            length += len(line)
            page += 1
        return (b"%PDF-1.7\n" + "".join(lines).encode())[: obj.size]
    header = JPEG_HEADER if obj.kind == "jpeg" else MP4_HEADER
    return header + os.urandom(obj.size - len(header))


def upload_objects(client: Any, bucket: str, objects: list[RawObject]) -> None:
    def put(item: tuple[int, RawObject]) -> None:
        index, obj = item
        client.put_object(Bucket=bucket, Key=obj.key, Body=object_bytes(obj, index))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, enumerate(objects)))


# ---------------------------------------------------------------- the child processes


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _zip_in_child(create: Any, endpoint: str, bucket: str, keys: list[str]) -> dict[str, Any]:
    """Run one ZIP implementation (same signature as create_zip_bundle) and time it."""
    from media_jobs.pipeline.config import PipelineConfig
    from media_jobs.pipeline.storage import storage_from_config

    config = PipelineConfig(
        bucket=bucket, storage_backend="s3", s3_endpoint_url=endpoint, region=REGION
    )
    storage = storage_from_config(config)
    event = {"jobId": 1, "listingIdentityId": LISTING, "assets": [{"key": k} for k in keys]}
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    body = create(event, storage=storage, config=config)["body"]
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes_in": body["unzippedSizeBytes"],
        "bytes_out": body["zipSizeBytes"],
        "key": body["zipKey"],
        "rss_before": rss_before,
    }


def child_project(endpoint: str, bucket: str, keys: list[str]) -> dict[str, Any]:
    from media_jobs.pipeline.zipper import create_zip_bundle

    return _zip_in_child(create_zip_bundle, endpoint, bucket, keys)


def child_pipelined(endpoint: str, bucket: str, keys: list[str]) -> dict[str, Any]:
    """The earlier proposal (bench/zip_pipelined.py): same writer, overlapped I/O."""
    from bench.zip_pipelined import create_zip_bundle_pipelined

    return _zip_in_child(create_zip_bundle_pipelined, endpoint, bucket, keys)


def child_copy(endpoint: str, bucket: str, keys: list[str]) -> dict[str, Any]:
    """(d) GET each object in chunks, upload 8 MiB parts of one object, complete."""
    client = _s3_client(endpoint)
    target = f"{LISTING}/bench/plain-copy.bin"
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=target)["UploadId"]
    parts: list[dict[str, Any]] = []
    buffer = bytearray()
    total = 0

    def flush(data: bytes) -> None:
        number = len(parts) + 1
        etag = client.upload_part(
            Bucket=bucket, Key=target, UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})

    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        while chunk := body.read(COPY_CHUNK):
            buffer += chunk
            total += len(chunk)
            if len(buffer) >= PART_SIZE:
                flush(bytes(buffer[:PART_SIZE]))
                del buffer[:PART_SIZE]
        body.close()
    if buffer or not parts:
        flush(bytes(buffer))
    client.complete_multipart_upload(
        Bucket=bucket, Key=target, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes_in": total,
        "bytes_out": total,
        "key": target,
        "rss_before": rss_before,
    }


def child_inmemory(endpoint: str, bucket: str, keys: list[str]) -> dict[str, Any]:
    """(e) the Go way: every object read whole, DEFLATEd into an in-memory archive, one PUT."""
    from media_jobs.pipeline.keys import unique_entry_names, zip_entry_name

    client = _s3_client(endpoint)
    target = f"{LISTING}/bench/in-memory.zip"
    names = unique_entry_names(zip_entry_name(key, LISTING) for key in keys)
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, name in zip(keys, names, strict=True):
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            total += len(data)
            archive.writestr(name, data)
            del data
    payload = buffer.getbuffer()
    client.put_object(Bucket=bucket, Key=target, Body=payload.tobytes())
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes_in": total,
        "bytes_out": len(payload),
        "key": target,
        "rss_before": rss_before,
    }


CHILDREN = {
    "project": child_project,
    "copy": child_copy,
    "inmemory": child_inmemory,
    "pipelined": child_pipelined,
}
LABELS = {
    "project": "(project) create_zip_bundle, streamed",
    "copy": "(d) plain streaming copy",
    "inmemory": "(e) Go method: in-memory zipfile, DEFLATE",
    "pipelined": "(proposal) same writer, overlapped I/O (bench/zip_pipelined.py)",
}


def peak_rss_self() -> int:
    """VmHWM: this process image's own peak RSS. (``ru_maxrss`` is no use here: Linux carries
    the parent's peak across fork+exec, so a child would report the parent's 1 GiB.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_main(kind: str, endpoint: str, bucket: str, manifest: Path) -> None:
    keys = json.loads(manifest.read_text())
    outcome = CHILDREN[kind](endpoint, bucket, keys)
    outcome["maxrss"] = peak_rss_self()
    times = os.times()
    outcome["cpu_seconds"] = times.user + times.system
    print("BENCH-RESULT " + json.dumps(outcome), flush=True)


# ---------------------------------------------------------------- the parent


def run_child(kind: str, endpoint: str, bucket: str, manifest: Path) -> dict[str, Any]:
    """Start one contender, sample its RSS every 10 ms, return its own figures."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.zip",
            "--child",
            kind,
            "--endpoint",
            endpoint,
            "--bucket",
            bucket,
            "--manifest",
            str(manifest),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            process = psutil.Process(proc.pid)
            while not stop.is_set():
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.01)
        except psutil.Error:
            return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=1800)
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{stderr[-3000:]}")
    line = next(x for x in stdout.splitlines() if x.startswith("BENCH-RESULT "))
    outcome = json.loads(line.removeprefix("BENCH-RESULT "))
    outcome["peak_rss"] = max(peak, outcome["maxrss"])
    return outcome


def check_archive(client: Any, bucket: str, key: str, objects: list[RawObject]) -> str:
    """Download the project's ZIP to disk and check it like an unzip tool would."""
    with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
        client.download_fileobj(bucket, key, tmp)
        tmp.flush()
        with zipfile.ZipFile(tmp.name) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise AssertionError(f"CRC error in {bad}")
            infos = archive.infolist()
            if len(infos) != len(objects):
                raise AssertionError(f"{len(infos)} entries, expected {len(objects)}")
            if sum(i.file_size for i in infos) != sum(o.size for o in objects):
                raise AssertionError("entry sizes do not add up to the objects")
            stored = sum(1 for i in infos if i.compress_type == zipfile.ZIP_STORED)
            deflated = len(infos) - stored
    return f"{len(infos)} entries, CRCs ok, {stored} stored, {deflated} deflated"


def run(
    *,
    smoke: bool = False,
    runs: int | None = None,
    total_mib: int | None = None,
    count: int | None = None,
    proposal: bool = False,
) -> BenchResult:
    runs = runs or (1 if smoke else 3)
    proposal = proposal or (not smoke and os.environ.get("BENCH_ZIP_PROPOSAL", "1") == "1")
    total_mib = total_mib or (24 if smoke else 1024)
    count = count or (20 if smoke else 200)
    objects = plan_objects(total_mib * MIB, count)
    total_bytes = sum(o.size for o in objects)
    result = BenchResult(
        key="zip",
        title="2. ZIP of a listing in the S3 test server",
        params={
            "objects": len(objects),
            "MiB": round(total_bytes / MIB),
            "kinds": ", ".join(
                f"{sum(1 for o in objects if o.kind == k)} {k}" for k in ("jpeg", "mp4", "pdf")
            ),
            "runs": runs,
        },
    )
    result.load["before"] = load_average()
    moto_peak = 0
    with moto_server() as server, tempfile.TemporaryDirectory() as tmp:
        client = server.client("s3")
        bucket = new_bucket(server, "toq-bench-zip")
        upload_objects(client, bucket, objects)
        manifest = Path(tmp) / "keys.json"
        manifest.write_text(json.dumps([o.key for o in objects]))
        moto_process = psutil.Process(server.pid)
        kinds = [k for k in CHILDREN if proposal or k != "pipelined"]
        outcomes: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for index in range(runs):
            for kind in kinds:
                outcome = run_child(kind, server.endpoint_url, bucket, manifest)
                if outcome["bytes_in"] != total_bytes:
                    raise AssertionError(f"{kind} read {outcome['bytes_in']} of {total_bytes}")
                if kind == "project" and index == 0:
                    result.figures["archive check"] = check_archive(
                        client, bucket, outcome["key"], objects
                    )
                moto_peak = max(moto_peak, moto_process.memory_info().rss)
                client.delete_object(Bucket=bucket, Key=outcome["key"])
                outcomes[kind].append(outcome)
                result.timing(LABELS[kind]).runs.append(outcome["seconds"])
                result.timing(f"{LABELS[kind]}: throughput", "MB/s").runs.append(
                    outcome["bytes_in"] / outcome["seconds"] / MB
                )
    result.load["after"] = load_average()

    seconds = {k: result.timing(LABELS[k]).median for k in kinds}
    peak = {k: max(o["peak_rss"] for o in outcomes[k]) for k in kinds}
    for kind in kinds:
        result.figures[f"peak RSS {LABELS[kind]} (MB)"] = peak[kind] / MB
        result.figures[f"RSS before the step {LABELS[kind]} (MB)"] = (
            max(o["rss_before"] for o in outcomes[kind]) / MB
        )
    result.figures["archive size / input size (project)"] = (
        outcomes["project"][0]["bytes_out"] / total_bytes
    )
    result.figures["archive size / input size (e)"] = (
        outcomes["inmemory"][0]["bytes_out"] / total_bytes
    )
    result.figures["moto server peak RSS (MB)"] = moto_peak / MB
    result.targets = [
        Target("project peak RSS", peak["project"] / MB, "<=", 200, " MB"),
        Target(
            "project throughput / (d) plain copy throughput",
            ratio(seconds["copy"], seconds["project"]),
            ">=",
            0.7,
            "x",
        ),
        Target(
            "(e) in-memory time / project time",
            ratio(seconds["inmemory"], seconds["project"]),
            ">=",
            3.0,
            "x",
        ),
    ]
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--total-mib", type=int, default=None, help="raw media in MiB")
    parser.add_argument("--count", type=int, default=None, help="number of objects")
    parser.add_argument(
        "--proposal",
        action="store_true",
        help="also run bench/zip_pipelined.py (overlapped I/O); on by default at full size",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse_hidden())
    parser.add_argument("--endpoint", help=argparse_hidden())
    parser.add_argument("--bucket", help=argparse_hidden())
    parser.add_argument("--manifest", type=Path, help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.endpoint, args.bucket, args.manifest)
        return
    result = run(
        smoke=args.smoke,
        runs=args.runs,
        total_mib=args.total_mib,
        count=args.count,
        proposal=args.proposal,
    )
    finish(result, args.json or result_path(result.key, args.smoke))


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
