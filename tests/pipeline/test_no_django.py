"""The pipeline package never imports Django (docs/contract.md §1: a Lambda zip must not contain it).

A fresh interpreter gets an import hook that makes ``import django`` fail, then imports every
module of ``media_jobs.pipeline`` and runs the consolidate and callback handlers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from media_jobs.pipeline.callback import SIGNATURE_HEADER, verify_signature
from tests.support.callback_receiver import CallbackReceiver

ROOT = Path(__file__).resolve().parents[2]
SECRET = "no-django-secret"

PROBE = r"""
import importlib, importlib.abc, json, pkgutil, sys

class NoDjango(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "django" or name.startswith("django."):
            raise ImportError(f"the pipeline must not import {name}")
        return None

sys.meta_path.insert(0, NoDjango())
try:
    import django  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the import hook does not work")

import media_jobs.pipeline as pipeline
modules = sorted(
    info.name for info in pkgutil.walk_packages(pipeline.__path__, "media_jobs.pipeline.")
)
for name in modules:
    importlib.import_module(name)

from media_jobs.pipeline.handlers import callback, consolidate

result = consolidate.handler(
    {"jobId": 1, "listingIdentityId": "4711", "executionArn": "arn", "startedAt": "t",
     "assets": [], "parallelResults": [{"status": "no_videos_to_process"}], "traceparent": ""},
    None,
)
answer = callback.handler({"statusCode": 200, "body": result["body"]}, None)
print(json.dumps({
    "modules": modules,
    "status": result["body"]["status"],
    "callback": answer,
    "django_loaded": any(m == "django" or m.startswith("django.") for m in sys.modules),
}))
"""


def test_pipeline_and_handlers_work_without_django(receiver: CallbackReceiver) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO", "PYTEST")) and key != "PYTHONPATH"
    }
    env.update(
        PYTHONPATH=str(ROOT),
        CALLBACK_URL=receiver.url,
        CALLBACK_SECRET=SECRET,
        MEDIA_STORAGE_BACKEND="local",
    )
    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["django_loaded"] is False
    assert report["status"] == "SUCCEEDED"
    assert report["callback"]["statusCode"] == 200
    expected = {
        f"media_jobs.pipeline.handlers.{name}"
        for name in (
            "validate",
            "thumbnails",
            "video_thumbnails",
            "video_transcode",
            "consolidate",
            "callback",
            "zip",
        )
    }
    assert expected <= set(report["modules"])
    assert "media_jobs.pipeline.storage_s3" in report["modules"]
    [received] = receiver.received
    assert received.json()["jobId"] == 1
    assert verify_signature(received.body, SECRET, received.headers[SIGNATURE_HEADER])
