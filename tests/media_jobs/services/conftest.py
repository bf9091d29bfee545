"""The services tests' callback receiver: the shared one, set as the portal's CALLBACK_URL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.callback_receiver import CallbackReceiver


@pytest.fixture
def receiver(receiver: CallbackReceiver, settings: Any) -> CallbackReceiver:
    """The running receiver as CALLBACK_URL, with short timeouts and unscaled backoff."""
    settings.CALLBACK_URL = receiver.url
    settings.CALLBACK_SECRET = "delivery-secret"
    settings.CALLBACK_MAX_ATTEMPTS = 4
    settings.CALLBACK_TIMEOUT_SECONDS = 2
    settings.PIPELINE_RETRY_DELAY_SCALE = 1.0
    return receiver
