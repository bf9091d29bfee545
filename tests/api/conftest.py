"""The JSON API is called with Django's test client over the real URL map."""

from __future__ import annotations

from typing import Any

import pytest

TOKEN = "test-api-token"


@pytest.fixture
def api_settings(settings: Any) -> Any:
    settings.API_TOKENS = [TOKEN, "second-token"]
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    return settings


@pytest.fixture
def auth() -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
