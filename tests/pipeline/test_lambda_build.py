"""scripts/build_lambdas.sh: one zip per function, Django-free, and runnable from the zip alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from media_jobs import sample_media
from media_jobs.pipeline.storage_local import LocalStorage

# Builds every Lambda zip (tens of seconds).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/build_lambdas.sh"
FUNCTIONS = (
    "validate",
    "thumbnails",
    "video_thumbnails",
    "video_transcode",
    "consolidate",
    "callback",
    "zip",
)


def build(out_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LAMBDA_OUT_DIR": str(out_dir), "PYTHON": sys.executable, **env}
    return subprocess.run(
        [str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def local_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("lambdas-local")
    result = build(out_dir, "--local")
    assert result.returncode == 0, result.stderr
    return out_dir


def check_bundle(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as bundle:
        assert bundle.testzip() is None
        names = bundle.namelist()
    for module in FUNCTIONS:
        assert f"media_jobs/pipeline/handlers/{module}.py" in names
    assert "media_jobs/__init__.py" in names
    assert "media_jobs/pipeline/consolidate.py" in names
    assert not [n for n in names if n.startswith("django/") or "/django/" in n]
    assert not [n for n in names if n.startswith(("tests/", "boto3/", "botocore/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # only the pipeline package from this repository: no Django app module
    ours = [n for n in names if n.startswith("media_jobs/")]
    assert all(n == "media_jobs/__init__.py" or n.startswith("media_jobs/pipeline/") for n in ours)
    assert any(n.startswith("PIL/") for n in names)
    assert any(n.startswith("pillow_heif/") for n in names)
    assert any(n.startswith("pyvips/") for n in names)
    assert any(n.startswith("pyvips_binary.libs/libvips") for n in names)
    assert any(n.startswith("requests/") for n in names)
    assert any(n.startswith("zipstream/") for n in names)
    return names


def test_local_build_has_one_clean_zip_per_function(local_build: Path) -> None:
    assert sorted(p.name for p in local_build.glob("*.zip")) == sorted(
        f"{name}.zip" for name in FUNCTIONS
    )
    for name in FUNCTIONS:
        check_bundle(local_build / f"{name}.zip")


RUN_FROM_ZIP = """
import json, sys
from media_jobs.pipeline.handlers import consolidate, thumbnails, validate

event = json.loads(sys.argv[1])
validation = validate.handler(event, None)
branch = thumbnails.handler(validation, None)
result = consolidate.handler(
    {**event, "executionArn": "run-1", "startedAt": "t0", "assets": validation["assets"],
     "parallelResults": [branch, {"status": "no_videos_to_thumbnail"}]},
    None,
)
print(json.dumps({"result": result, "django": "django" in sys.modules,
                  "pil": sys.modules["PIL"].__file__}))
"""


def test_handlers_run_from_the_unzipped_bundle_alone(local_build: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(local_build / "thumbnails.zip") as bundle:
        bundle.extractall(unpacked)
    media_root = tmp_path / "media"
    raw = "4711/raw/photo/horizontal/horizontal-01-IMG_1.jpg"
    LocalStorage(media_root, "toq-listing-medias").write(raw, sample_media.jpeg_bytes(320, 240))
    event = {"jobId": 5, "listingIdentityId": 4711, "assets": [raw], "traceparent": ""}
    # -S: no site-packages, so nothing but the standard library and the bundle is importable.
    completed = subprocess.run(
        [sys.executable, "-S", "-c", RUN_FROM_ZIP, json.dumps(event)],
        env={
            "PYTHONPATH": str(unpacked),
            "PATH": os.environ["PATH"],
            "MEDIA_STORAGE_BACKEND": "local",
            "MEDIA_LOCAL_ROOT": str(media_root),
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["django"] is False
    assert report["pil"].startswith(str(unpacked))
    body = report["result"]["body"]
    assert body["status"] == "SUCCEEDED"
    [output] = body["outputs"]
    assert output["processedKey"] == "4711/processed/photo/horizontal/large/horizontal-01-IMG_1.jpg"
    assert (media_root / "toq-listing-medias" / output["thumbnailKey"]).is_file()
    # The handlers log JSON lines (no handler was configured, so they go to stderr).
    lines = [json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{")]
    finished = [line for line in lines if line["message"] == "thumbnails finished"]
    assert finished and finished[0]["job_id"] == 5 and finished[0]["step"] == "thumbnails"


def test_lambda_runtime_build(tmp_path: Path) -> None:
    """The real target: python3.12 manylinux x86_64 wheels (from pip's cache when warm)."""
    result = build(tmp_path, LAMBDA_FUNCTIONS="consolidate thumbnails")
    if result.returncode != 0 and "No matching distribution" in result.stderr:
        pytest.skip(f"python3.12 wheels unavailable here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == ["consolidate.zip", "thumbnails.zip"]
    names = check_bundle(tmp_path / "thumbnails.zip")
    native = [n for n in names if n.endswith(".so") and n.startswith(("PIL/", "_pillow_heif"))]
    assert native and all("cpython-312-x86_64-linux-gnu" in n for n in native)
    assert "_libvips.abi3.so" in names  # pyvips-binary: one stable-ABI build for 3.7+
    # A rebuild of the same sources gives the same bytes (deploys of unchanged code are no-ops).
    again = build(tmp_path / "again", LAMBDA_FUNCTIONS="consolidate")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again/consolidate.zip").read_bytes() == (
        tmp_path / "consolidate.zip"
    ).read_bytes()
