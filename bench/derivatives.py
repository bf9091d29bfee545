"""Benchmark 1: the four web derivatives of a photo (SPEC §2), three ways, in one run.

(a) the project's thumbnails step, ``media_jobs.pipeline.thumbnails.render_derivatives``;
(b) the Go system's method redone in Pillow: full decode, EXIF transpose, one Lanczos resize
    from the full image per size;
(c) libvips (pyvips): ``thumbnail_buffer`` to the largest width (shrink-on-load, orientation
    applied), then each smaller size from that one.

The contenders run interleaved (a, b, c, a, b, c, ...) so a load spike on the shared machine
hits all three alike. Targets: (a) <= 1.3 x (c); (b)/(a) >= 3.5; SSIM(a.large, b.large) >= 0.98.

    python -m bench.derivatives --runs 3 [--smoke]
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

from bench.common import BenchResult, Target, base_parser, finish, load_average, ratio, result_path
from bench.ssim import ssim_jpeg
from media_jobs import sample_media
from media_jobs.pipeline.keys import IMAGE_SIZES
from media_jobs.pipeline.thumbnails import render_derivatives

JPEG_QUALITY = 85
# (name, width, height, orientation) as displayed; the two inputs.
FULL_INPUTS = [("24MP-orientation6", 6000, 4000, 6), ("12MP-orientation1", 4000, 3000, 1)]
SMOKE_INPUTS = [("2MP-orientation6", 1800, 1200, 6), ("1MP-orientation1", 1200, 900, 1)]
SIZES_LARGEST_FIRST = sorted(IMAGE_SIZES.items(), key=lambda item: -item[1])
# Any height: the width decides (SPEC §2), libvips' box must not limit a portrait photo.
UNBOUNDED = 10_000_000


@dataclass(frozen=True)
class Output:
    size: str
    width: int
    height: int
    data: bytes


def project(data: bytes) -> list[Output]:
    """(a) the project's step (in memory: the storage round trip is not what is compared)."""
    return [Output(d.size, d.width, d.height, d.data) for d in render_derivatives(io.BytesIO(data))]


def _fit(width: int, height: int, target: int) -> tuple[int, int]:
    out_width = min(target, width)
    return out_width, max(1, round(height * out_width / width))


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def naive_pillow(data: bytes) -> list[Output]:
    """(b) full decode + exif_transpose, then one Lanczos resize of the full image per size."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened.convert("RGB") if opened.mode != "RGB" else opened)
        image.load()
    outputs = []
    for size, target in SIZES_LARGEST_FIRST:
        width, height = _fit(*image.size, target)
        resized = image.resize((width, height), Image.Resampling.LANCZOS)
        outputs.append(Output(size, width, height, _encode(resized)))
    return outputs


def libvips(data: bytes) -> list[Output]:
    """(c) libvips: shrink-on-load thumbnail to the largest width, smaller ones from it."""
    import pyvips

    largest = SIZES_LARGEST_FIRST[0][1]
    current = pyvips.Image.thumbnail_buffer(data, largest, height=UNBOUNDED, size="down")
    current = current.copy_memory()  # decode once; the smaller sizes read these pixels
    outputs = []
    for size, target in SIZES_LARGEST_FIRST:
        if current.width > target:
            current = current.thumbnail_image(target, height=UNBOUNDED, size="down")
            current = current.copy_memory()
        encoded = current.jpegsave_buffer(Q=JPEG_QUALITY, strip=True)
        outputs.append(Output(size, current.width, current.height, encoded))
    return outputs


CONTENDERS: dict[str, Callable[[bytes], list[Output]]] = {
    "a": project,
    "b": naive_pillow,
    "c": libvips,
}
LABELS = {
    "a": "(a) project render_derivatives",
    "b": "(b) naive Pillow (Go method)",
    "c": "(c) libvips thumbnail",
}


def _check_outputs(name: str, outputs: list[Output], width: int, height: int) -> None:
    """Every contender must produce the same four sizes, or the timings mean nothing."""
    got = {o.size: (o.width, o.height) for o in outputs}
    want = {size: _fit(width, height, target) for size, target in IMAGE_SIZES.items()}
    for size, (want_w, want_h) in want.items():
        got_w, got_h = got.get(size, (0, 0))
        if got_w != want_w or abs(got_h - want_h) > 1:
            raise AssertionError(f"{name}: {size} is {got_w}x{got_h}, expected {want_w}x{want_h}")


def run(*, smoke: bool = False, runs: int | None = None) -> BenchResult:
    import pyvips

    runs = runs or (2 if smoke else 7)
    # One libvips thread: a worker process renders one photo per core, like Pillow does.
    vips_threads = int(os.environ.get("BENCH_VIPS_CONCURRENCY", "1"))
    pyvips.concurrency_set(vips_threads)
    inputs = SMOKE_INPUTS if smoke else FULL_INPUTS
    result = BenchResult(
        key="derivatives",
        title="1. Derivatives (thumbnail, small, medium, large; JPEG q85)",
        params={
            "inputs": ", ".join(n for n, *_ in inputs),
            "runs": runs,
            "vips_threads": vips_threads,
        },
    )
    result.load["before"] = load_average()
    ssim_values: dict[str, float] = {}
    per_photo: dict[str, dict[str, float]] = {}
    for name, width, height, orientation in inputs:
        data = sample_media.jpeg_bytes(width, height, orientation=orientation)
        large: dict[str, bytes] = {}
        for key, fn in CONTENDERS.items():  # warm-up, and the correctness check
            outputs = fn(data)
            _check_outputs(LABELS[key], outputs, width, height)
            large[key] = next(o.data for o in outputs if o.size == "large")
        ssim_values[name] = ssim_jpeg(large["a"], large["b"])
        for _ in range(runs):
            for key, fn in CONTENDERS.items():
                started = time.perf_counter()
                fn(data)
                result.timing(f"{LABELS[key]} [{name}]").runs.append(time.perf_counter() - started)
        per_photo[name] = {
            key: result.timing(f"{LABELS[key]} [{name}]").median for key in CONTENDERS
        }
    result.load["after"] = load_average()

    # The ratios of the sums of per-input medians: each input weighs by its own cost.
    total = {key: sum(per_photo[name][key] for name in per_photo) for key in CONTENDERS}
    result.figures["(a) seconds per photo (mean of inputs' medians)"] = total["a"] / len(inputs)
    for name in per_photo:
        result.figures[f"(a)/(c) {name}"] = ratio(per_photo[name]["a"], per_photo[name]["c"])
        result.figures[f"(b)/(a) {name}"] = ratio(per_photo[name]["b"], per_photo[name]["a"])
        result.figures[f"SSIM(a.large, b.large) {name}"] = ssim_values[name]
    result.targets = [
        Target("(a) time / (c) libvips time", ratio(total["a"], total["c"]), "<=", 1.3, "x"),
        Target("(b) naive Pillow time / (a) time", ratio(total["b"], total["a"]), ">=", 3.5, "x"),
        Target(
            "SSIM of (a) large vs (b) large (worst input)",
            min(ssim_values.values()),
            ">=",
            0.98,
        ),
    ]
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    args = parser.parse_args()
    result = run(smoke=args.smoke, runs=args.runs)
    finish(result, args.json or result_path(result.key, args.smoke))


if __name__ == "__main__":
    main()
