"""Every portal page in Chromium, in English and in Brazilian Portuguese: no serious or
critical axe-core violation, the page in the language the browser asks for (``<html lang>``
and its words), and a screenshot of each at 1366 px and 390 px (test-artifacts/screenshots/)."""

from __future__ import annotations

import json

import pytest

from media_jobs.models import CallbackDelivery, JobStatus
from tests.admin.users import OPERATORS, PASSWORD, make_user
from tests.browser.conftest import axe_violations, login
from tests.factories import JobFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]
JOBS = "/admin/media_jobs/mediaprocessingjob/"
# A word each page shows in its language (the title of the dashboard's first box).
DASHBOARD_WORD = {"en": "Unresolved failures", "pt-br": "Falhas não resolvidas"}


def check(page, shot, name: str, language: str, problems: dict[str, list[dict]]) -> None:
    """The page's language, its axe violations (collected, asserted at the end so one run
    reports every page) and its screenshots at both widths."""
    assert page.locator("html").get_attribute("lang") == language, name
    found = axe_violations(page)
    if found:
        problems[name] = found
    shot.both(name)


@pytest.mark.parametrize("language", ["en", "pt-br"])
def test_every_page_has_no_serious_axe_violation(
    page, shot, language, live_server, transactional_db, local_storage_settings, processed_media
):
    listing, partial_job = processed_media
    base = live_server.url
    failed = JobFactory(
        listing_identity_id=listing,
        status=JobStatus.FAILED,
        last_error="code=CORRUPT_IMAGE | image file is truncated",
    )
    running = JobFactory(listing_identity_id=listing + 1, status=JobStatus.RUNNING)
    delivery = CallbackDelivery.objects.create(
        job_id=partial_job,
        url="http://127.0.0.1:9/callback",
        request_body=json.dumps({"jobId": partial_job}),
        signature="0" * 64,
        error="Connection refused",
        attempt=1,
    )
    operator = make_user(f"olga-axe-{language}", group=OPERATORS)
    problems: dict[str, list[dict]] = {}

    page.goto(f"{base}/admin/login/")
    check(page, shot, "login", language, problems)
    login(page, base, operator.username, PASSWORD)
    page.locator("svg#toq-daily-chart").wait_for()
    assert DASHBOARD_WORD[language] in page.locator("#content").inner_text()
    check(page, shot, "dashboard", language, problems)

    pages = {
        "jobs": JOBS,
        "jobs-unresolved": f"{JOBS}?resolution=unresolved",
        "jobs-filtered": f"{JOBS}?status__exact=FAILED&error_code=CORRUPT_IMAGE&q={listing}",
        "job-page": f"{JOBS}{partial_job}/change/",
        "listing": f"/admin/media_jobs/listing/{listing}/",
        "storage-check": f"/admin/media_jobs/listing/{listing}/storage-check/",
        "error-groups": "/admin/media_jobs/error-groups/",
        "deliveries": "/admin/media_jobs/callbackdelivery/",
        "delivery": f"/admin/media_jobs/callbackdelivery/{delivery.pk}/change/",
        "assets": "/admin/media_jobs/mediaasset/",
        "retry-confirmation": f"{JOBS}{failed.pk}/retry/",
        "mark-failed-confirmation": f"{JOBS}{running.pk}/mark-failed/",
        "replay-confirmation": f"/admin/media_jobs/callbackdelivery/{delivery.pk}/replay/",
        "execution": f"{JOBS}{failed.pk}/execution/",
    }
    for name, path in pages.items():
        page.goto(f"{base}{path}")
        if name in ("job-page", "listing"):
            page.locator(".toq-storage-check").wait_for()
        check(page, shot, name, language, problems)

    page.goto(f"{base}/admin/media_jobs/error-groups/")
    page.locator("a.toq-action").first.click()
    page.locator("#toq-confirm-retry").wait_for()
    check(page, shot, "error-group-retry-confirmation", language, problems)

    page.goto(f"{base}/admin/media_jobs/mediaasset/")
    page.locator("#result_list tbody input.action-select").first.check()
    page.select_option("select[name=action]", "reprocess_selected")
    with page.expect_navigation():
        page.locator(".actions button[type=submit]").first.click()
    page.locator("#toq-confirm-reprocess").wait_for()
    check(page, shot, "reprocess-confirmation", language, problems)

    page.context.clear_cookies()
    staff = make_user(f"sam-axe-{language}")
    login(page, base, staff.username, PASSWORD)
    response = page.goto(f"{base}{JOBS}")
    assert response.status == 403
    check(page, shot, "403", language, problems)

    assert not problems, "\n".join(
        f"{name}: {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}"
        for name, found in problems.items()
        for v in found
    )
