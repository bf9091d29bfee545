"""Fixtures of the admin portal tests: users in the two migration-made groups, local storage
with real generated media, and a processed listing as the pipeline leaves it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from media_jobs.pipeline.storage import Storage
from media_jobs.storage import pipeline_storage
from tests.admin.users import OPERATORS, VIEWERS, make_user
from tests.support.listing import processed_listing_in


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The error-code choices are cached a minute; every test starts without them."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator(db):
    return make_user("olga-operator", group=OPERATORS)


@pytest.fixture
def viewer(db):
    return make_user("victor-viewer", group=VIEWERS)


@pytest.fixture
def staff_without_permissions(db):
    return make_user("sam-staff")


@pytest.fixture
def superuser(db):
    return make_user("root-admin", superuser=True)


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(operator) -> Client:
    return _client_for(operator)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return _client_for(viewer)


@pytest.fixture
def staff_client(staff_without_permissions) -> Client:
    return _client_for(staff_without_permissions)


@pytest.fixture
def admin_client_(superuser) -> Client:
    return _client_for(superuser)


@pytest.fixture
def local_media(settings, tmp_path: Path) -> Storage:
    """The local storage backend in tmp_path (what ``make run`` uses by default)."""
    settings.MEDIA_STORAGE_BACKEND = "local"
    settings.MEDIA_LOCAL_ROOT = tmp_path / "media"
    return pipeline_storage()


@pytest.fixture
def celery_engine(settings):
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    settings.CALLBACK_URL = ""


ProcessedListing = Callable[..., dict]


@pytest.fixture
def processed_listing(local_media: Storage, celery_engine) -> ProcessedListing:
    """A listing as a finished processing job leaves it: raw photos and their derivatives in
    storage (real JPEGs), assets PROCESSED with outputs recorded, one FAILED asset."""

    def build(listing_identity_id: int = 4242, **options: Any) -> dict:
        return processed_listing_in(local_media, listing_identity_id, **options)

    return build
