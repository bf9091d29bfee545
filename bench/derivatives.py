"""Benchmark 1: the four web derivatives of a photo (docs/contract.md §2) against sharp, in one run.

Contenders, interleaved (the order rotates every round, so a load spike or a warm cache
favours none of them):

(project) ``media_jobs.pipeline.thumbnails.render_derivatives``, in memory (8-bit RGB
          baseline JPEGs and RGB PNGs through libvips, media_jobs/pipeline/vips_render.py;
          HEIC and the other kinds through Pillow);
(sharp)   sharp 0.35 (libvips 8.18 + mozjpeg + SIMD, what AWS's Serverless Image Handler
          runs), bench/sharp/render.mjs: one thread, one shrink-on-load decode to ``large``,
          every size from those pixels, quality 85;
(c)       pyvips on the libvips it loads (pyvips-binary's 8.18 when installed, as the
          requirements pin it; else the machine's): ``thumbnail_buffer`` to ``large``, each
          smaller size from the previous, one thread;
(b)       the seed (Go) method redone in Pillow: full decode, EXIF transpose, one Lanczos
          resize of the full image per size.

Inputs: the 24 MP JPEG with EXIF orientation 6, a 12 MP JPEG, a 45 MP camera JPEG (quality
95, 4:2:2 chroma) and a 24 MP PNG; plus a 12 MP HEIC, timed for the project and pyvips only
(sharp's prebuilt libvips does not decode HEVC; its error is reported).

Quality: every output's SSIM (luma) against a full-precision reference: full decode,
orientation applied, one Lanczos resize of float luma from the full image to that output's
size, no JPEG in between.

Targets, per input: project time <= 1.00x sharp's; project SSIM no more than 0.005 below
sharp's (worst size); project output bytes (all four) <= 1.05x sharp's. pyvips and the seed
method are reported. ``bench.derivatives_profile`` adds where the project's time goes.

    python -m bench.derivatives --runs 3 [--smoke] [--no-profile]
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench.common import (
    RESULTS_DIR,
    BenchResult,
    Target,
    base_parser,
    finish,
    load_average,
    ratio,
    result_path,
)
from bench.sharp_client import SharpRenderer, unavailable_reason
from bench.ssim import luma, ssim
from media_jobs import sample_media
from media_jobs.pipeline.keys import IMAGE_SIZES
from media_jobs.pipeline.thumbnails import render_derivatives

JPEG_QUALITY = 85
SIZES_LARGEST_FIRST = sorted(IMAGE_SIZES.items(), key=lambda item: -item[1])
# Any height: the width decides (docs/contract.md §2), libvips' box must not limit a portrait photo.
UNBOUNDED = 10_000_000
# Bump to regenerate the cached inputs (bench/results/inputs) after changing how they are made.
INPUTS_VERSION = 1
INPUTS_DIR = RESULTS_DIR / "inputs"
TIME_TARGET = 1.00  # project / sharp, every input
SSIM_MARGIN = 0.005  # project may be this much below sharp
BYTES_TARGET = 1.05  # project / sharp
# The seed method is a reference figure, several times slower: fewer rounds of it.
SEED_RUNS = 3
PROFILE_RUNS = 2


# ---------------------------------------------------------------- inputs


def camera_jpeg_bytes(width: int, height: int) -> bytes:
    """What a full-frame camera writes: quality 95, 4:2:2 chroma, EXIF with make and model."""
    image = sample_media.with_marker(sample_media.photographic(width, height, seed=3))
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "TOQ"
    exif[0x0110] = "TOQ sample full-frame camera"
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, subsampling=1, exif=exif.tobytes())
    return out.getvalue()


def png_bytes(width: int, height: int) -> bytes:
    """An 8-bit RGB PNG (a rendering or a screenshot: no shrink-on-load for anyone)."""
    out = io.BytesIO()
    sample_media.with_marker(sample_media.photographic(width, height, seed=5)).save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Input:
    name: str
    suffix: str
    make: Callable[[], bytes]
    width: int  # as displayed
    height: int


def _inputs(smoke: bool) -> tuple[list[Input], Input]:
    if smoke:
        return [
            Input(
                "2MP-orientation6",
                "jpg",
                lambda: sample_media.jpeg_bytes(1800, 1200, orientation=6),
                1800,
                1200,
            ),
            Input("1MP-orientation1", "jpg", lambda: sample_media.jpeg_bytes(1200, 900), 1200, 900),
            Input("4MP-camera", "jpg", lambda: camera_jpeg_bytes(2400, 1600), 2400, 1600),
            Input("2MP-png", "png", lambda: png_bytes(1500, 1000), 1500, 1000),
        ], Input("1MP-heic", "heic", lambda: sample_media.heic_bytes(1200, 900), 1200, 900)
    return [
        Input(
            "24MP-orientation6",
            "jpg",
            lambda: sample_media.jpeg_bytes(6000, 4000, orientation=6),
            6000,
            4000,
        ),
        Input("12MP-orientation1", "jpg", lambda: sample_media.jpeg_bytes(4000, 3000), 4000, 3000),
        Input("45MP-camera", "jpg", lambda: camera_jpeg_bytes(8256, 5504), 8256, 5504),
        Input("24MP-png", "png", lambda: png_bytes(6000, 4000), 6000, 4000),
    ], Input("12MP-heic", "heic", lambda: sample_media.heic_bytes(4000, 3000), 4000, 3000)


def input_file(item: Input) -> Path:
    """The input on disk (sharp reads a file), generated once and kept in bench/results."""
    path = INPUTS_DIR / f"{item.name}-v{INPUTS_VERSION}.{item.suffix}"
    if not path.exists():
        INPUTS_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(item.make())
        tmp.replace(path)
    return path


# ---------------------------------------------------------------- contenders


@dataclass(frozen=True)
class Output:
    size: str
    width: int
    height: int
    nbytes: int
    data: bytes | None = None  # kept from the checked run (SSIM); None in timed runs


def _fit(width: int, height: int, target: int) -> tuple[int, int]:
    out_width = min(target, width)
    return out_width, max(1, round(height * out_width / width))


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def project(data: bytes) -> list[Output]:
    """The project's step (in memory: the storage round trip is not what is compared)."""
    return [
        Output(d.size, d.width, d.height, len(d.data), d.data)
        for d in render_derivatives(io.BytesIO(data))
    ]


def seed_method(data: bytes) -> list[Output]:
    """(b) full decode + exif_transpose, then one Lanczos resize of the full image per size."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened)
        image = image.convert("RGB") if image.mode != "RGB" else image
        image.load()
    outputs = []
    for size, target in SIZES_LARGEST_FIRST:
        width, height = _fit(*image.size, target)
        resized = image.resize((width, height), Image.Resampling.LANCZOS)
        encoded = _encode(resized)
        outputs.append(Output(size, width, height, len(encoded), encoded))
    return outputs


def pyvips_thumbnail(data: bytes) -> list[Output]:
    """(c) libvips: shrink-on-load thumbnail to the largest width, smaller ones from it."""
    import pyvips  # noqa: PLC0415 - optional: hosts without libvips still run the others

    largest = SIZES_LARGEST_FIRST[0][1]
    current = pyvips.Image.thumbnail_buffer(data, largest, height=UNBOUNDED, size="down")
    current = current.copy_memory()  # decode once; the smaller sizes read these pixels
    outputs = []
    for size, target in SIZES_LARGEST_FIRST:
        if current.width > target:
            current = current.thumbnail_image(target, height=UNBOUNDED, size="down")
            current = current.copy_memory()
        encoded = current.jpegsave_buffer(Q=JPEG_QUALITY, strip=True)
        outputs.append(Output(size, current.width, current.height, len(encoded), encoded))
    return outputs


PYTHON_CONTENDERS: dict[str, Callable[[bytes], list[Output]]] = {
    "project": project,
    "pyvips": pyvips_thumbnail,
    "seed": seed_method,
}
LABELS = {
    "project": "(project) render_derivatives",
    "sharp": "(sharp) sharp 0.35, 1 thread",
    "pyvips": "(c) pyvips thumbnail_buffer",
    "seed": "(b) seed method: full decode + Lanczos",
}


def _sharp_outputs(answer: dict[str, Any], keep: bool) -> list[Output]:
    if "error" in answer:
        raise RuntimeError(answer["error"])
    outputs = []
    for o in answer["outputs"]:
        data = Path(o["path"]).read_bytes() if keep and o.get("path") else None
        outputs.append(Output(o["size"], o["width"], o["height"], o["bytes"], data))
    return outputs


def _check_outputs(name: str, outputs: list[Output], width: int, height: int) -> None:
    """Every contender must produce the same four sizes, or the timings mean nothing."""
    got = {o.size: (o.width, o.height) for o in outputs}
    want = {size: _fit(width, height, target) for size, target in IMAGE_SIZES.items()}
    for size, (want_w, want_h) in want.items():
        got_w, got_h = got.get(size, (0, 0))
        if got_w != want_w or abs(got_h - want_h) > 1:
            raise AssertionError(f"{name}: {size} is {got_w}x{got_h}, expected {want_w}x{want_h}")


# ---------------------------------------------------------------- quality


class Reference:
    """Full-precision reference of one input: float luma of the full decode (orientation
    applied), resized with Lanczos straight to each output's size."""

    def __init__(self, data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        # ITU-R 601-2 luma, as Image.convert("L") computes it from the outputs.
        y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        self._luma = Image.fromarray(y.astype(np.float32), mode="F")
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def at(self, width: int, height: int) -> np.ndarray:
        if (width, height) not in self._cache:
            resized = self._luma.resize((width, height), Image.Resampling.LANCZOS)
            self._cache[(width, height)] = np.clip(np.asarray(resized, dtype=np.float64), 0, 255)
        return self._cache[(width, height)]

    def ssim(self, output: Output) -> float:
        assert output.data is not None
        decoded = luma(Image.open(io.BytesIO(output.data)))
        return ssim(self.at(output.width, output.height), decoded)


# ---------------------------------------------------------------- the run


def run(*, smoke: bool = False, runs: int | None = None, profile: bool = True) -> BenchResult:
    import pyvips  # noqa: PLC0415 - optional: hosts without libvips still run the others

    runs = runs or (2 if smoke else 7)
    # One libvips thread: a worker process renders one photo per core, like Pillow does.
    vips_threads = int(os.environ.get("BENCH_VIPS_CONCURRENCY", "1"))
    pyvips.concurrency_set(vips_threads)
    inputs, heic = _inputs(smoke)
    sharp_missing = unavailable_reason()
    result = BenchResult(
        key="derivatives",
        title="1. Derivatives vs sharp (thumbnail, small, medium, large; JPEG q85)",
        params={
            "inputs": ", ".join(i.name for i in inputs) + f"; {heic.name} (project, pyvips)",
            "runs": runs,
            "threads per contender": 1,
        },
    )
    result.load["before"] = load_average()
    started = time.perf_counter()
    files = {item.name: input_file(item) for item in [*inputs, heic]}
    result.figures["input files (MB)"] = ", ".join(
        f"{name} {path.stat().st_size / 1e6:.1f}" for name, path in files.items()
    )
    result.figures["seconds to make or load the inputs"] = time.perf_counter() - started

    result.figures["pyvips (c) and the project's libvips"] = (
        f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
        f" ({'pyvips-binary' if pyvips.API_mode else 'the machine'})"
    )
    sharp = None if sharp_missing else SharpRenderer()
    if sharp is not None:
        v = sharp.versions
        result.figures["sharp"] = (
            f"sharp {v.get('sharp')}, libvips {v.get('vips')}, mozjpeg {v.get('mozjpeg')}, "
            f"concurrency {v.get('concurrency')}, SIMD {v.get('simd')}"
        )
    else:
        result.notes.append(f"sharp did not run: {sharp_missing}")
    per_input: dict[str, dict[str, Any]] = {}
    try:
        for item in inputs:
            per_input[item.name] = _measure_input(result, item, files[item.name], sharp, runs)
        _measure_heic(result, heic, files[heic.name], sharp, runs)
        if profile and sharp is not None:
            from bench.derivatives_profile import sharp_stage_table  # noqa: PLC0415 - a cycle: derivatives_profile imports this module

            result.tables.append(
                sharp_stage_table(sharp, {i.name: files[i.name] for i in inputs}, PROFILE_RUNS)
            )
    finally:
        if sharp is not None:
            sharp.close()
    if profile:
        from bench.derivatives_profile import profile_tables  # noqa: PLC0415 - a cycle: derivatives_profile imports this module

        try:
            result.tables.extend(profile_tables(inputs, files, min(runs, PROFILE_RUNS)))
        except Exception as exc:  # noqa: BLE001 - the targets stand without the profile
            result.notes.append(f"the stage profile failed: {type(exc).__name__}: {exc}")
    result.load["after"] = load_average()

    for name, figures in per_input.items():
        result.targets.append(
            Target(
                f"project time / sharp time, {name}",
                figures.get("time_ratio"),
                "<=",
                TIME_TARGET,
                "x",
            )
        )
    ssim_margins = {
        name: f["ssim_margin"] for name, f in per_input.items() if f.get("ssim_margin") is not None
    }
    bytes_ratios = {
        name: f["bytes_ratio"] for name, f in per_input.items() if f.get("bytes_ratio") is not None
    }
    worst_ssim = min(ssim_margins, key=lambda n: ssim_margins[n]) if ssim_margins else None
    worst_bytes = max(bytes_ratios, key=lambda n: bytes_ratios[n]) if bytes_ratios else None
    result.targets += [
        Target(
            "project SSIM - sharp SSIM vs the full-precision reference (worst input and size)",
            ssim_margins.get(worst_ssim) if worst_ssim else None,
            ">=",
            -SSIM_MARGIN,
            detail=f"worst: {per_input[worst_ssim]['ssim_worst']}" if worst_ssim else "",
        ),
        Target(
            "project output bytes / sharp's (worst input)",
            bytes_ratios.get(worst_bytes) if worst_bytes else None,
            "<=",
            BYTES_TARGET,
            "x",
            detail=f"worst: {worst_bytes}" if worst_bytes else "",
        ),
    ]
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def _measure_input(
    result: BenchResult, item: Input, path: Path, sharp: SharpRenderer | None, runs: int
) -> dict[str, Any]:
    """Check every contender's outputs once, then time them interleaved ``runs`` times."""
    data = path.read_bytes()
    reference = Reference(data)
    contenders: dict[str, Callable[[], list[Output]]] = {
        key: (lambda fn=fn: fn(data)) for key, fn in PYTHON_CONTENDERS.items()
    }
    order = ["project", "pyvips", "seed"]
    if sharp is not None:
        order.insert(1, "sharp")
    checked: dict[str, list[Output]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in order:
            if key == "sharp":
                assert sharp is not None
                outputs = _sharp_outputs(sharp.render(path, Path(tmp)), keep=True)
            else:
                outputs = contenders[key]()
            _check_outputs(LABELS[key], outputs, item.width, item.height)
            checked[key] = outputs
    # CPU seconds of every thread of each contender (sharp's node process, this process for
    # the others): one thread each, so on a quiet machine this is the time; on a loaded one
    # it does not include waiting for a core, which the wall times do.
    cpu: dict[str, list[float]] = {key: [] for key in order}
    for round_index in range(runs):
        shift = round_index % len(order)
        for key in order[shift:] + order[:shift]:
            if key == "seed" and round_index >= SEED_RUNS:
                continue
            if key == "sharp":
                assert sharp is not None
                answer = sharp.render(path)
                seconds, cpu_seconds = answer["seconds"], answer["cpuSeconds"]
            else:
                cpu_began = time.process_time()
                began = time.perf_counter()
                contenders[key]()
                seconds = time.perf_counter() - began
                cpu_seconds = time.process_time() - cpu_began
            result.timing(f"{LABELS[key]} [{item.name}]").runs.append(seconds)
            cpu[key].append(cpu_seconds)

    medians = {key: result.timing(f"{LABELS[key]} [{item.name}]").median for key in order}
    quality = {key: {o.size: reference.ssim(o) for o in outs} for key, outs in checked.items()}
    nbytes = {key: sum(o.nbytes for o in outs) for key, outs in checked.items()}
    figures: dict[str, Any] = {}
    name = item.name
    for key in order:
        worst = min(quality[key], key=lambda s: quality[key][s])
        result.figures[f"SSIM {key} [{name}] (worst size)"] = (
            f"{quality[key][worst]:.4f} ({worst}); "
            + ", ".join(f"{s} {v:.4f}" for s, v in quality[key].items())
        )
        result.figures[f"output bytes {key} [{name}]"] = nbytes[key]
    if "sharp" in medians:
        figures["time_ratio"] = ratio(medians["project"], medians["sharp"])
        figures["bytes_ratio"] = ratio(nbytes["project"], nbytes["sharp"])
        margins = {s: quality["project"][s] - quality["sharp"][s] for s in quality["project"]}
        worst_size = min(margins, key=lambda s: margins[s])
        figures["ssim_margin"] = margins[worst_size]
        figures["ssim_worst"] = (
            f"{name} {worst_size}: project {quality['project'][worst_size]:.4f}, "
            f"sharp {quality['sharp'][worst_size]:.4f}"
        )
        result.figures[f"project/sharp time [{name}]"] = figures["time_ratio"]
        result.figures[f"project/sharp CPU time [{name}]"] = ratio(
            statistics.median(cpu["project"]), statistics.median(cpu["sharp"])
        )
        result.figures[f"CPU ms per photo, project / sharp [{name}]"] = (
            f"{statistics.median(cpu['project']) * 1000:.0f} / "
            f"{statistics.median(cpu['sharp']) * 1000:.0f}"
        )
        result.figures[f"project/sharp bytes [{name}]"] = figures["bytes_ratio"]
        result.figures[f"pyvips/sharp time [{name}]"] = ratio(medians["pyvips"], medians["sharp"])
    result.figures[f"project/pyvips time [{name}]"] = ratio(medians["project"], medians["pyvips"])
    result.figures[f"seed/project time [{name}]"] = ratio(medians["seed"], medians["project"])
    return figures


def _measure_heic(
    result: BenchResult, item: Input, path: Path, sharp: SharpRenderer | None, runs: int
) -> None:
    """HEIC: timed for the project and pyvips (when its libvips has libheif); sharp tried once."""
    data = path.read_bytes()
    contenders: dict[str, Callable[[], list[Output]]] = {"project": lambda: project(data)}
    try:
        _check_outputs("pyvips", pyvips_thumbnail(data), item.width, item.height)
        contenders["pyvips"] = lambda: pyvips_thumbnail(data)
    except Exception as exc:  # noqa: BLE001 - a libvips without HEIF is a finding
        result.figures[f"pyvips [{item.name}]"] = f"cannot: {_one_line(str(exc))}"
    if sharp is not None:
        answer = sharp.render(path)
        result.figures[f"sharp [{item.name}]"] = (
            f"cannot: {_one_line(answer['error'])}"
            if "error" in answer
            else "decodes it (not timed)"
        )
    _check_outputs("project", contenders["project"](), item.width, item.height)
    for _ in range(min(runs, PROFILE_RUNS)):  # figures only: fewer rounds
        for key, fn in contenders.items():
            began = time.perf_counter()
            fn()
            result.timing(f"{LABELS[key]} [{item.name}]").runs.append(time.perf_counter() - began)
    if "pyvips" in contenders:
        result.figures[f"project/pyvips time [{item.name}]"] = ratio(
            result.timing(f"{LABELS['project']} [{item.name}]").median,
            result.timing(f"{LABELS['pyvips']} [{item.name}]").median,
        )


def _one_line(message: str) -> str:
    """An error's distinct lines on one line (libvips repeats itself), shortened."""
    lines = list(dict.fromkeys(line.strip() for line in message.splitlines() if line.strip()))
    text = "; ".join(lines[:1] + lines[-1:] if len(lines) > 1 else lines)
    return text[:200]


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--no-profile", action="store_true", help="skip the stage profile")
    args = parser.parse_args()
    result = run(smoke=args.smoke, runs=args.runs, profile=not args.no_profile)
    finish(result, args.json or result_path(result.key, args.smoke))


if __name__ == "__main__":
    main()
