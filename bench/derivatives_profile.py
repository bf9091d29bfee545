"""Where the derivatives' time goes: the project's steps one by one, sharp's stages, and what
the alternatives would cost or save (benchmark 1's "work remaining").

The project renders 8-bit RGB baseline JPEGs and RGB PNGs with libvips (vips_render) and
everything else with Pillow. ``mirror`` redoes the Pillow path for an RGB JPEG or PNG with
Pillow's public calls and the step's own constants, timing each stage; its outputs are
compared byte for byte with the project's Pillow path (``USE_VIPS`` off), so the profile
says when it no longer describes it. The Pillow variants change one thing each (encoder
flags, filters, a halving by ``reduce``); the libvips variants change the kernels of the
libvips path. Every variant reports time, bytes and SSIM against the same full-precision
reference as benchmark 1.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageCms

from bench.derivatives import Output, Reference, project
from media_jobs.pipeline import thumbnails, vips_render
from media_jobs.pipeline.keys import IMAGE_SIZES

SIZES = sorted(IMAGE_SIZES.items(), key=lambda item: -item[1])
QUALITY = getattr(thumbnails, "JPEG_QUALITY", 85)
FIRST_FILTER = getattr(thumbnails, "FIRST_STEP_FILTER", Image.Resampling.BICUBIC)
REDUCING_GAP = getattr(thumbnails, "REDUCING_GAP", 3.0)
DECODE_BLOCK = getattr(thumbnails, "DECODE_BLOCK_BYTES", 64 * 1024)
ORIENTATION_TAG = 0x0112
TRANSPOSE = thumbnails._TRANSPOSE_FOR_ORIENTATION  # the step's own map
_SRGB = ImageCms.createProfile("sRGB")
# What an embedded ICC profile costs (a photo with a camera or Display P3 profile): an
# lcms matrix-shaper transform of the same shape, run at ``large``.
_ICC_TRANSFORM = ImageCms.buildTransform(_SRGB, _SRGB, "RGB", "RGB")


@dataclass(frozen=True)
class Variant:
    """One way to render: each field differs from the project's step in one respect."""

    name: str
    first_filter: Image.Resampling = FIRST_FILTER
    smaller: str = "lanczos"  # lanczos (chained), bicubic, reduce (box halving when exact)
    encoder: dict[str, Any] = field(default_factory=lambda: {"optimize": True})
    draft: bool = True
    reducing_gap: float = REDUCING_GAP


VARIANTS = [
    Variant("project's choices (mirror)"),
    Variant("encoder: standard Huffman tables (optimize=False)", encoder={}),
    Variant("encoder: progressive=True", encoder={"optimize": True, "progressive": True}),
    Variant("first resize: bilinear", first_filter=Image.Resampling.BILINEAR),
    Variant("first resize: Lanczos", first_filter=Image.Resampling.LANCZOS),
    Variant("first resize: reducing_gap 2 (box reduce to within 2x first)", reducing_gap=2.0),
    Variant("smaller sizes: bicubic", smaller="bicubic"),
    Variant("smaller sizes: reduce(2) where exact, else Lanczos", smaller="reduce"),
    Variant("no draft (full decode, then reduce + bicubic)", draft=False),
]


def mirror(data: bytes, variant: Variant) -> tuple[list[Output], dict[str, float]]:
    """The project's path for an 8-bit RGB JPEG or PNG, stage by stage (seconds per stage)."""
    stages: dict[str, float] = {}
    mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - mark
        mark = now

    image = Image.open(io.BytesIO(data))
    orientation = image.getexif().get(ORIENTATION_TAG, 1)
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    stored_w, stored_h = image.size
    rotated = orientation in (5, 6, 7, 8)
    shown_w, shown_h = (stored_h, stored_w) if rotated else (stored_w, stored_h)
    stage("open + header + EXIF (a PNG is decoded here: its EXIF may follow the pixels)")
    targets = [(size, *_fit(shown_w, shown_h, width)) for size, width in SIZES]
    _, large_w, large_h = targets[0]
    image.decodermaxblock = DECODE_BLOCK  # type: ignore[attr-defined]
    box = None
    if variant.draft:
        drafted = image.draft("RGB", (1, large_w) if rotated else (large_w, 1))
        box = drafted[1] if drafted is not None else None
    image.load()
    stage("decode (DCT-scaled by draft if JPEG)" if variant.draft else "decode (full)")
    stored_large = (large_h, large_w) if rotated else (large_w, large_h)
    current = image.resize(
        stored_large, variant.first_filter, box=box, reducing_gap=variant.reducing_gap
    )
    stage("first resize to large")
    if current.mode != "RGB":
        current = current.convert("RGB")
    stage("colour (no ICC profile: none)")
    transpose = TRANSPOSE.get(orientation)
    if transpose is not None:
        current = current.transpose(transpose)
    stage("orientation (transpose at large)")
    outputs = []
    for size, width, height in targets:
        if current.size != (width, height):
            current = _smaller(current, width, height, variant.smaller)
            stage(f"resize to {size} ({width} px)")
        out = io.BytesIO()
        current.save(out, "JPEG", quality=QUALITY, **variant.encoder)
        encoded = out.getvalue()
        stage(f"encode {size}")
        outputs.append(Output(size, width, height, len(encoded), encoded))
    return outputs, stages


def _smaller(image: Image.Image, width: int, height: int, how: str) -> Image.Image:
    if how == "reduce" and image.width == 2 * width and abs(image.height / 2 - height) <= 1:
        reduced = image.reduce(2)
        return reduced if reduced.size == (width, height) else reduced.resize((width, height))
    filt = Image.Resampling.BICUBIC if how == "bicubic" else Image.Resampling.LANCZOS
    return image.resize((width, height), filt)


def _fit(width: int, height: int, target: int) -> tuple[int, int]:
    out_width = min(target, width)
    return out_width, max(1, round(height * out_width / width))


def _median_stages(fn: Callable[[], dict[str, float]], runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, seconds in fn().items():
            samples.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def profile_tables(inputs: list[Any], files: dict[str, Path], runs: int) -> list[dict[str, Any]]:
    """Two tables: the project's stages per JPEG input, and the variants against it."""
    stage_columns: dict[str, dict[str, float]] = {}
    variant_columns: dict[str, dict[str, str]] = {}
    vips_columns: dict[str, dict[str, str]] = {}
    mirrored: dict[str, bool] = {}
    for item in inputs:
        data = files[item.name].read_bytes()
        reference = Reference(data)
        project_bytes = [o.data for o in _pillow_path(data)]
        baseline_outputs, _ = mirror(data, VARIANTS[0])
        mirrored[item.name] = [o.data for o in baseline_outputs] == project_bytes
        stages = _median_stages(lambda data=data: mirror(data, VARIANTS[0])[1], runs)
        started = time.perf_counter()
        for _ in range(runs):
            _pillow_path(data)
        stages["(total of the project's Pillow path, measured alone)"] = (
            time.perf_counter() - started
        ) / runs
        large = baseline_outputs[0]
        assert large.data is not None
        with Image.open(io.BytesIO(large.data)) as decoded:
            pixels = decoded.convert("RGB")
        began = time.perf_counter()
        for _ in range(runs):
            ImageCms.applyTransform(pixels, _ICC_TRANSFORM)
        stages["(ICC -> sRGB at large, if the photo had a profile)"] = (
            time.perf_counter() - began
        ) / runs
        stage_columns[item.name] = stages
        # The variants interleaved run by run (a load spike hits them all alike).
        samples: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
        checked = {v.name: mirror(data, v)[0] for v in VARIANTS}
        for _ in range(runs):
            for variant in VARIANTS:
                began = time.perf_counter()
                mirror(data, variant)
                samples[variant.name].append(time.perf_counter() - began)
        base_total = statistics.median(samples[VARIANTS[0].name])
        _vips_variants(data, reference, runs, item.name, vips_columns)
        for variant in VARIANTS:
            total = statistics.median(samples[variant.name])
            outputs = checked[variant.name]
            nbytes = sum(o.nbytes for o in outputs)
            worst = min(reference.ssim(o) for o in outputs)
            variant_columns.setdefault(variant.name, {})[item.name] = (
                f"{total * 1000:.1f} ms ({(total - base_total) * 1000:+.1f}), "
                f"{nbytes / 1000:.0f} kB, SSIM {worst:.4f}"
            )
    names = [item.name for item in inputs]
    stage_names: list[str] = []
    for stages in stage_columns.values():
        stage_names += [s for s in stages if s not in stage_names]
    stage_rows = [
        [stage, *(f"{stage_columns[n].get(stage, float('nan')) * 1000:.2f}" for n in names)]
        for stage in stage_names
    ]
    faithful = all(mirrored.values())
    return [
        {
            "title": "Profile: the project's Pillow path, stage by stage (ms, median)",
            "header": ["stage", *names],
            "rows": stage_rows,
            "note": (
                "The Pillow path renders what libvips does not take (CMYK, "
                "grey, alpha, HEIC, ...) and every photo where libvips is missing. The stages "
                "are timed in a re-implementation of it "
                "(bench/derivatives_profile.py) whose outputs are "
                + (
                    "byte-identical to the project's on every input."
                    if faithful
                    else "NOT identical to the project's on "
                    + ", ".join(n for n, ok in mirrored.items() if not ok)
                    + ": the step's code changed; update the mirror."
                )
            ),
        },
        {
            "title": "Variants of the Pillow path: total (change), output bytes, worst SSIM",
            "header": ["variant", *names],
            "rows": [[v.name, *(variant_columns[v.name][n] for n in names)] for v in VARIANTS],
            "note": "Each variant changes one thing; SSIM is against the full-precision "
            "reference of the targets (worst of the four sizes).",
        },
        {
            "title": "Variants of the libvips path (kernels: to large / each smaller size): "
            "total (change), output bytes, worst SSIM",
            "header": ["variant", *names],
            "rows": [[v, *(vips_columns[v][n] for n in names)] for v in vips_columns],
            "note": "The project's step itself with vips_render's kernels set per row, "
            "interleaved; the first row is the project's choice.",
        },
    ]


# (kernel to large, kernel for each smaller size); the project's choice first.
VIPS_VARIANTS = [
    (vips_render.FIRST_KERNEL, vips_render.SMALLER_KERNEL),
    ("lanczos3", "lanczos3"),
    ("lanczos3", "cubic"),
    ("cubic", "cubic"),
    ("linear", "cubic"),
    ("linear", "linear"),
]


def _pillow_path(data: bytes) -> list[Output]:
    saved = thumbnails.USE_VIPS
    thumbnails.USE_VIPS = False
    try:
        return project(data)
    finally:
        thumbnails.USE_VIPS = saved


def _with_kernels(data: bytes, kernels: tuple[str, str]) -> list[Output]:
    saved = vips_render.FIRST_KERNEL, vips_render.SMALLER_KERNEL
    vips_render.FIRST_KERNEL, vips_render.SMALLER_KERNEL = kernels
    try:
        return project(data)
    finally:
        vips_render.FIRST_KERNEL, vips_render.SMALLER_KERNEL = saved


def _vips_variants(
    data: bytes, reference: Any, runs: int, name: str, columns: dict[str, dict[str, str]]
) -> None:
    if not vips_render.available():
        return
    variants = list(dict.fromkeys(VIPS_VARIANTS))
    labels = {
        k: f"{k[0]} / {k[1]}" + (" (project)" if i == 0 else "") for i, k in enumerate(variants)
    }
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    checked = {k: _with_kernels(data, k) for k in variants}
    for _ in range(runs):
        for kernels in variants:
            began = time.perf_counter()
            _with_kernels(data, kernels)
            samples[kernels].append(time.perf_counter() - began)
    base = statistics.median(samples[variants[0]])
    for kernels in variants:
        total = statistics.median(samples[kernels])
        nbytes = sum(o.nbytes for o in checked[kernels])
        worst = min(reference.ssim(o) for o in checked[kernels])
        columns.setdefault(labels[kernels], {})[name] = (
            f"{total * 1000:.1f} ms ({(total - base) * 1000:+.1f}), "
            f"{nbytes / 1000:.0f} kB, SSIM {worst:.4f}"
        )


def sharp_stage_table(sharp: Any, paths: dict[str, Path], runs: int) -> dict[str, Any]:
    """sharp's own stages (render.mjs times them): decode + resize to large, then each size."""
    columns: dict[str, dict[str, float]] = {}
    for name, path in paths.items():
        samples: dict[str, list[float]] = {}
        for _ in range(runs):
            answer = sharp.render(path)
            for stage, seconds in answer.get("stages", {}).items():
                samples.setdefault(stage, []).append(seconds)
            samples.setdefault("(total)", []).append(answer["seconds"])
        columns[name] = {k: statistics.median(v) for k, v in samples.items()}
    names = list(columns)
    stages: list[str] = []
    for values in columns.values():
        stages += [s for s in values if s not in stages]
    return {
        "title": "Profile: sharp's stages (ms, median)",
        "header": ["stage", *names],
        "rows": [
            [s, *(f"{columns[n].get(s, float('nan')) * 1000:.2f}" for n in names)] for s in stages
        ],
        "note": "decode+resize = one libvips pipeline: shrink-on-load decode, orientation, "
        "Lanczos3 to large, to raw pixels; then each size is resized from those pixels and "
        "encoded by mozjpeg (sharp's defaults: 4:2:0, optimize_coding on, baseline).",
    }
