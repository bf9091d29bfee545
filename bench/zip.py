"""Benchmark 2: the listing ZIP of 1 GiB and of 4 GiB of raw media in the S3 test server.

Contenders, each in a process of its own so its peak RSS is its own, interleaved:
(project) ``media_jobs.pipeline.zipper.create_zip_bundle`` (streamed, multipart, media STORED;
    the ZIP format written by zipstream-ng, docs/decisions/0006-zip-writer.md);
(d) a plain streaming copy of the same objects, one after the other, into one multipart
    object through the same server: what moving the bytes costs, with no ZIP at all;
(e) reported, not a target: the seed (Go) system's approach redone in Python, the whole
    archive built in memory with ``zipfile`` (DEFLATE for everything), then one PutObject;
    on a quarter of the 1 GiB listing (it is ~3x slower and holds everything in memory),
    against one run of the project on the same objects.

The 4 GiB listing holds the 1 GiB listing's objects four times over (server-side copies under
other names), so it costs no upload time. The server is moto with a streaming
CompleteMultipartUpload (bench/moto_lean.py): stock moto joins the parts in memory, which a
4 GiB archive cannot afford; its peak RSS is reported.

Targets: project throughput >= 1.0 x (d) (1 GiB, interleaved runs); the project's peak RSS
<= 160 MB at both sizes, and the two peaks within 10 MB of each other (memory does not grow
with the listing). The 4 GiB listing runs the project only: it is there for the memory. The 1 GiB archive is downloaded and checked with ``zipfile.testzip``.

    python -m bench.zip --runs 1 --total-mib 128 --big-factor 2 [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
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

import boto3
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
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.keys import unique_entry_names, zip_entry_name
from media_jobs.pipeline.storage_factory import storage_from_config
from media_jobs.pipeline.zipper import create_zip_bundle

MB = 1_000_000
MIB = 1024**2
LISTING = 770001  # the 1 GiB listing
BIG_LISTING = 770004  # the 4 GiB one
PART_SIZE = 8 * MIB  # the project's default part size, used by (d) too
COPY_CHUNK = 1 * MIB
JPEG_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
MP4_HEADER = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
# moto keeps objects up to this size in memory, larger ones in temporary files: small, so
# a 4 GiB listing lives on disk and the server's memory stays out of the machine's way.
MOTO_KEY_BUFFER_BYTES = 1 * MIB
PEAK_RSS_MB = 160
FLAT_RSS_MB = 10
THROUGHPUT_TARGET = 1.0


@dataclass(frozen=True)
class RawObject:
    key: str
    size: int
    kind: str  # jpeg, mp4, pdf


def plan_objects(total_bytes: int, count: int, listing: int = LISTING) -> list[RawObject]:
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
        objects.append(RawObject(f"{listing}/raw/photo/horizontal/{name}", photo_size, "jpeg"))
    for i in range(videos):
        name = f"horizontal-{i + 1:03d}-MVI_{3000 + i}.mp4"
        objects.append(RawObject(f"{listing}/raw/video/horizontal/{name}", video_size, "mp4"))
    for i in range(pdfs):
        name = f"doc-{i + 1:02d}-floorplan.pdf"
        objects.append(RawObject(f"{listing}/raw/project/doc/{name}", pdf_size, "pdf"))
    return objects


def copies_of(objects: list[RawObject], factor: int, listing: int) -> list[RawObject]:
    """The objects ``factor`` times over under ``listing``: copy n of IMG_2000.jpg is
    IMG_2000-n.jpg (a bigger listing made by server-side copies, without uploading)."""
    planned = []
    for n in range(1, factor + 1):
        for obj in objects:
            folder, name = obj.key.split("/raw/", 1)[1].rsplit("/", 1)
            stem, ext = name.rsplit(".", 1)
            key = f"{listing}/raw/{folder}/{stem}-{n}.{ext}"
            planned.append(RawObject(key, obj.size, obj.kind))
    return planned


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


def copy_objects(client: Any, bucket: str, sources: list[RawObject], factor: int) -> None:
    """Server-side copies: ``copies_of(sources, factor, ...)`` made from ``sources``."""
    targets = copies_of(sources, factor, BIG_LISTING)
    pairs = [(sources[i % len(sources)], target) for i, target in enumerate(targets)]

    def copy(pair: tuple[RawObject, RawObject]) -> None:
        source, target = pair
        client.copy_object(
            Bucket=bucket, Key=target.key, CopySource={"Bucket": bucket, "Key": source.key}
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(copy, pairs))


# ---------------------------------------------------------------- the child processes


def _s3_client(endpoint: str) -> Any:

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def child_project(endpoint: str, bucket: str, listing: int, keys: list[str]) -> dict[str, Any]:
    """The project's step, as the Celery task and the Lambda handler call it."""

    config = PipelineConfig(
        bucket=bucket, storage_backend="s3", s3_endpoint_url=endpoint, region=REGION
    )
    storage = storage_from_config(config)
    event = {"jobId": 1, "listingIdentityId": listing, "assets": [{"key": k} for k in keys]}
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    body = create_zip_bundle(event, storage=storage)["body"]
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes_in": body["unzippedSizeBytes"],
        "bytes_out": body["zipSizeBytes"],
        "key": body["zipKey"],
        "rss_before": rss_before,
    }


def child_copy(endpoint: str, bucket: str, listing: int, keys: list[str]) -> dict[str, Any]:
    """(d) GET each object in chunks, upload 8 MiB parts of one object, complete."""
    client = _s3_client(endpoint)
    target = f"{listing}/bench/plain-copy.bin"
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


def child_inmemory(endpoint: str, bucket: str, listing: int, keys: list[str]) -> dict[str, Any]:
    """(e) the Go way: every object read whole, DEFLATEd into an in-memory archive, one PUT."""

    client = _s3_client(endpoint)
    target = f"{listing}/bench/in-memory.zip"
    names = unique_entry_names(zip_entry_name(key, listing) for key in keys)
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
}
LABELS = {
    "project": "(project) create_zip_bundle, streamed",
    "copy": "(d) plain streaming copy",
    "inmemory": "(e) seed method: in-memory zipfile, DEFLATE",
}


def peak_rss_self() -> int:
    """VmHWM: this process image's own peak RSS. (``ru_maxrss`` is no use here: Linux carries
    the parent's peak across fork+exec, so a child would report the parent's 1 GiB.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_main(kind: str, endpoint: str, bucket: str, listing: int, manifest: Path) -> None:
    keys = json.loads(manifest.read_text())
    outcome = CHILDREN[kind](endpoint, bucket, listing, keys)
    outcome["maxrss"] = peak_rss_self()
    times = os.times()
    outcome["cpu_seconds"] = times.user + times.system
    print("BENCH-RESULT " + json.dumps(outcome), flush=True)


# ---------------------------------------------------------------- the parent


def run_child(
    kind: str, endpoint: str, bucket: str, listing: int, manifest: Path, server_pid: int
) -> dict[str, Any]:
    """Start one contender; sample its RSS and the server's every 10 ms; its own figures."""
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
            "--listing",
            str(listing),
            "--manifest",
            str(manifest),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peaks = {"child": 0, "server": 0}
    stop = threading.Event()

    def sample() -> None:
        try:
            child = psutil.Process(proc.pid)
            server = psutil.Process(server_pid)
            while not stop.is_set():
                peaks["child"] = max(peaks["child"], child.memory_info().rss)
                peaks["server"] = max(peaks["server"], server.memory_info().rss)
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
    outcome["peak_rss"] = max(peaks["child"], outcome["maxrss"])
    outcome["server_peak_rss"] = peaks["server"]
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


@dataclass
class Listing:
    label: str  # "1 GiB"
    listing: int
    objects: list[RawObject]
    manifest: Path

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)


def run(
    *,
    smoke: bool = False,
    runs: int | None = None,
    big_runs: int | None = None,
    total_mib: int | None = None,
    count: int | None = None,
    big_factor: int | None = None,
    inmemory: bool = True,
) -> BenchResult:
    runs = runs or (1 if smoke else 3)
    big_runs = big_runs or 1
    total_mib = total_mib or (24 if smoke else 1024)
    count = count or (20 if smoke else 200)
    big_factor = big_factor or (2 if smoke else 4)
    objects = plan_objects(total_mib * MIB, count)
    big_objects = copies_of(objects, big_factor, BIG_LISTING)
    small_label = _size_label(sum(o.size for o in objects))
    big_label = _size_label(sum(o.size for o in big_objects))
    result = BenchResult(
        key="zip",
        title="2. ZIP of a listing in the S3 test server",
        params={
            "listings": f"{small_label} ({len(objects)} objects), "
            f"{big_label} ({len(big_objects)} objects)",
            "kinds": ", ".join(
                f"{sum(1 for o in objects if o.kind == k)} {k}" for k in ("jpeg", "mp4", "pdf")
            )
            + f" per {small_label}",
            "runs": f"{runs} at {small_label}, {big_runs} at {big_label}",
            "server": "moto, streaming CompleteMultipartUpload (bench/moto_lean.py)",
        },
    )
    result.load["before"] = load_average()
    scratch = Path(tempfile.gettempdir())
    # objects + the archive + its parts until the key is deleted, plus room for others
    needed = 3 * sum(o.size for o in big_objects) + 2 * 1024 * MIB
    free = shutil.disk_usage(scratch).free
    result.figures[f"free disk in {scratch} before (GB)"] = free / 1e9
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(MOTO_KEY_BUFFER_BYTES)
    with moto_server(lean=True) as server, tempfile.TemporaryDirectory() as tmp:
        client = server.client("s3")
        bucket = new_bucket(server, "toq-bench-zip")
        started = time.perf_counter()
        upload_objects(client, bucket, objects)
        result.figures[f"seconds to upload the {small_label} listing"] = (
            time.perf_counter() - started
        )
        listings = [Listing(small_label, LISTING, objects, Path(tmp) / "small.json")]
        if free >= needed:
            started = time.perf_counter()
            copy_objects(client, bucket, objects, big_factor)
            result.figures[f"seconds to copy it into the {big_label} listing"] = (
                time.perf_counter() - started
            )
            listings.append(Listing(big_label, BIG_LISTING, big_objects, Path(tmp) / "big.json"))
        else:
            result.notes.append(
                f"the {big_label} listing was skipped: {free / 1e9:.1f} GB free in {scratch}, "
                f"{needed / 1e9:.1f} GB needed"
            )
        for item in listings:
            item.manifest.write_text(json.dumps([o.key for o in item.objects]))
        outcomes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        checked = False
        for item in listings:
            # The big listing is there for the memory: the project only (the throughput
            # target is measured on the small one, the plain copy alongside).
            kinds = ["project", "copy"] if item.listing == LISTING else ["project"]
            for index in range(runs if item.listing == LISTING else big_runs):
                shift = index % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    outcome = _one_run(result, server, client, bucket, item, kind)
                    outcomes.setdefault((item.label, kind), []).append(outcome)
                    if kind == "project" and not checked:
                        result.figures["archive check"] = check_archive(
                            client, bucket, outcome["key"], item.objects
                        )
                        checked = True
                    client.delete_object(Bucket=bucket, Key=outcome["key"])
        if inmemory:
            # (e) on a quarter of the small listing (it holds the whole archive in memory and
            # is ~3x slower): the project once on the same objects, for the ratio.
            quarter = objects[::4]  # every fourth: the same mix of photos, videos and PDFs
            subset = Listing(
                _size_label(sum(o.size for o in quarter)),
                LISTING,
                quarter,
                Path(tmp) / "quarter.json",
            )
            subset.manifest.write_text(json.dumps([o.key for o in quarter]))
            for kind in ("project", "inmemory"):
                outcome = _one_run(result, server, client, bucket, subset, kind)
                outcomes[(f"{subset.label}, seed-method comparison", kind)] = [outcome]
                client.delete_object(Bucket=bucket, Key=outcome["key"])
            result.figures[f"(e) seed method time / project time [{subset.label}]"] = ratio(
                outcomes[(f"{subset.label}, seed-method comparison", "inmemory")][0]["seconds"],
                outcomes[(f"{subset.label}, seed-method comparison", "project")][0]["seconds"],
            )
    result.load["after"] = load_average()
    _summarise(result, listings, outcomes)
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def _one_run(
    result: BenchResult, server: Any, client: Any, bucket: str, item: Listing, kind: str
) -> dict[str, Any]:
    outcome = run_child(kind, server.endpoint_url, bucket, item.listing, item.manifest, server.pid)
    if outcome["bytes_in"] != item.total_bytes:
        raise AssertionError(f"{kind} read {outcome['bytes_in']} of {item.total_bytes}")
    label = f"{LABELS[kind]} [{item.label}]"
    # each run as it ends: a long run that fails later keeps what it measured
    print(
        f"run: {label}: {outcome['seconds']:.2f} s, peak RSS {outcome['peak_rss'] / MB:.0f} MB",
        flush=True,
    )
    result.timing(label).runs.append(outcome["seconds"])
    result.timing(f"{label}: throughput", "MB/s").runs.append(
        outcome["bytes_in"] / outcome["seconds"] / MB
    )
    return outcome


def _summarise(
    result: BenchResult,
    listings: list[Listing],
    outcomes: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    peaks: dict[str, float] = {}
    server_peak = 0.0
    for (size, kind), runs in outcomes.items():
        peak = max(o["peak_rss"] for o in runs) / MB
        server_peak = max(server_peak, max(o["server_peak_rss"] for o in runs) / MB)
        result.figures[f"peak RSS {LABELS[kind]} [{size}] (MB)"] = peak
        result.figures[f"RSS before the step {LABELS[kind]} [{size}] (MB)"] = (
            max(o["rss_before"] for o in runs) / MB
        )
        result.figures[f"CPU seconds {LABELS[kind]} [{size}]"] = min(o["cpu_seconds"] for o in runs)
        if kind == "project":
            peaks[size] = peak
    result.figures["S3 server (moto) peak RSS during the runs (MB)"] = server_peak
    first = listings[0]
    result.figures[f"archive size / input size (project) [{first.label}]"] = (
        outcomes[(first.label, "project")][0]["bytes_out"] / first.total_bytes
    )
    seconds = {
        kind: result.timing(f"{LABELS[kind]} [{first.label}]").median
        for kind in ("project", "copy")
    }
    result.targets.append(
        Target(
            f"project throughput / (d) plain copy throughput, {first.label}",
            ratio(seconds["copy"], seconds["project"]),
            ">=",
            THROUGHPUT_TARGET,
            "x",
        )
    )
    result.targets.append(
        Target(
            "project peak RSS (largest of its runs)",
            max(peaks.values()) if peaks else None,
            "<=",
            PEAK_RSS_MB,
            " MB",
        )
    )
    flat = abs(peaks[listings[1].label] - peaks[first.label]) if len(listings) > 1 else None
    result.targets.append(
        Target(
            f"project peak RSS, {listings[-1].label} minus {first.label} (absolute)",
            flat,
            "<=",
            FLAT_RSS_MB,
            " MB",
        )
    )


def _size_label(nbytes: int) -> str:
    gib = nbytes / 1024**3
    return f"{gib:.0f} GiB" if gib >= 0.99 else f"{nbytes / MIB:.0f} MiB"


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--total-mib", type=int, default=None, help="the small listing, MiB")
    parser.add_argument("--count", type=int, default=None, help="objects in the small listing")
    parser.add_argument("--big-factor", type=int, default=None, help="big = small x this")
    parser.add_argument("--big-runs", type=int, default=None, help="runs on the big listing")
    parser.add_argument("--no-inmemory", action="store_true", help="skip (e), the seed method")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse_hidden())
    parser.add_argument("--endpoint", help=argparse_hidden())
    parser.add_argument("--bucket", help=argparse_hidden())
    parser.add_argument("--listing", type=int, help=argparse_hidden())
    parser.add_argument("--manifest", type=Path, help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.endpoint, args.bucket, args.listing, args.manifest)
        return
    result = run(
        smoke=args.smoke,
        runs=args.runs,
        big_runs=args.big_runs,
        total_mib=args.total_mib,
        count=args.count,
        big_factor=args.big_factor,
        inmemory=not args.no_inmemory,
    )
    finish(result, args.json or result_path(result.key, args.smoke))


def argparse_hidden() -> str:

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
