"""pt-BR and English: the language each request gets, the switcher, the formats, <html lang>.

The pt-BR texts come from the compiled catalogue (``make setup`` runs compilemessages)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from media_jobs.admin.common import format_time
from media_jobs.models import JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db
INDEX = reverse("admin:index")
JOBS = reverse("admin:media_jobs_mediaprocessingjob_changelist")
PT = {"HTTP_ACCEPT_LANGUAGE": "pt-BR,pt;q=0.9,en;q=0.5"}
COMPILED = Path(settings.BASE_DIR) / "locale" / "pt_BR" / "LC_MESSAGES" / "django.mo"


@pytest.fixture(autouse=True)
def _compiled_catalogue():
    """The catalogue is there; and the language a pt-BR request activated in this thread
    (LocaleMiddleware leaves it active after the response) does not leak into later tests."""
    if not COMPILED.exists():
        pytest.fail(f"{COMPILED} is missing: run `make setup` (it runs compilemessages)")
    yield
    translation.deactivate()


def test_english_by_default(viewer_client):
    html = viewer_client.get(INDEX).content.decode()
    assert '<html lang="en"' in html
    assert "Unresolved failures" in html
    assert 'lang="pt-br"' in html  # the switcher offers Portuguese, in Portuguese


def test_accept_language_pt_br_gives_portuguese_pages(viewer_client):
    JobFactory(status=JobStatus.FAILED, last_error="code=CORRUPT_IMAGE | bad bytes")
    index = viewer_client.get(INDEX, **PT).content.decode()
    assert '<html lang="pt-br"' in index
    assert "Falhas não resolvidas" in index
    assert "Unresolved failures" not in index
    jobs = viewer_client.get(JOBS, **PT).content.decode()
    assert "Falhou" in jobs  # the status label is translated; the code is not
    assert "CORRUPT_IMAGE" in jobs
    assert "Com falha (não resolvidos)" in jobs


def test_switcher_sets_the_language_for_the_session(viewer_client):
    response = viewer_client.post(
        reverse("set_language"), {"language": "pt-br", "next": JOBS}, **PT
    )
    assert response.status_code == 302 and response["Location"] == JOBS
    html = viewer_client.get(JOBS, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="pt-br"' in html  # the session's choice beats the browser's
    viewer_client.post(reverse("set_language"), {"language": "en", "next": JOBS})
    assert '<html lang="en"' in viewer_client.get(JOBS, **PT).content.decode()


def test_one_timestamp_format_per_language_with_seconds_and_zone():
    moment = datetime(2026, 11, 30, 5, 15, 29, tzinfo=UTC)  # 02:15:29 in Sao Paulo
    with translation.override("en"):
        assert format_time(moment) == "2026-11-30 02:15:29 -03"
    with translation.override("pt-br"):
        assert format_time(moment) == "30/11/2026 02:15:29 -03"


def test_job_page_what_to_do_in_portuguese(viewer_client):
    job = JobFactory(status=JobStatus.FAILED, last_error="code=EMPTY_OBJECT | 0 bytes")
    html = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk]), **PT
    ).content.decode()
    assert "Peça que o arquivo seja enviado de novo e depois tente novamente." in html
    assert "EMPTY_OBJECT" in html
