"""The operator's whole loop in Chromium, with a real Celery worker (Redis, MariaDB, the S3
test server): ten failed jobs retried at once from the "Failed (unresolved)" list, the rows
turning Succeeded without a reload, the old failures marked resolved, and the results the
backend never received (its callback URL refuses connections) shown on the job page, in the
list and on the dashboard. Every page is kept as a screenshot at 1366 px and 390 px
(test-artifacts/screenshots/) and checked for sideways scrolling; the status column must stay
on screen on a phone."""

from __future__ import annotations

import re

import pytest

from media_jobs.models import TERMINAL_JOB_STATUSES, CallbackOutbox, JobStatus, OutboxState
from media_jobs.models import MediaProcessingJob as Job
from tests.admin.users import OPERATORS, PASSWORD, make_user
from tests.browser.conftest import DESKTOP, PHONE, axe_violations, login, low_contrast
from tests.factories import JobFactory
from tests.fixtures.s3server import free_port
from tests.fixtures.worker import wait_until
from tests.support.seed import failed_jobs

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow]
JOBS = "/admin/media_jobs/mediaprocessingjob/"
# What the loop reads on the pages, in each language of the portal (ids and codes never change).
TEXT = {
    "en": {
        "unresolved_link": "Failed (unresolved)",
        "undelivered_link": "Not delivered",
        "retried_as": "retried as",
        "resolved_by": "resolved by",
        "pending": "Pending",
        "succeeded": "Succeeded",
        "no_jobs": "0 media processing jobs",
        "not_delivered": "not delivered",
        "replay_title": "Replay callback delivery",
        "processed": "processed",
    },
    "pt-br": {
        "unresolved_link": "Com falha (não resolvidos)",
        "undelivered_link": "Não entregues",
        "retried_as": "refeito como",
        "resolved_by": "resolvido por",
        "pending": "Pendente",
        "succeeded": "Concluído",
        "no_jobs": "0 jobs",
        "not_delivered": "não entregue",
        "replay_title": "Reenviar a entrega de callback",
        "processed": "processada",
    },
}


def status_column_on_screen(page) -> bool:
    """At 390 px the list's status column is visible, not cut off or scrolled away."""
    page.set_viewport_size(PHONE)
    box = page.locator("#result_list thead th.column-status_badge").bounding_box()
    page.set_viewport_size(DESKTOP)
    return box is not None and box["width"] > 0 and box["x"] + box["width"] <= PHONE["width"]


def follow(page, link) -> None:
    """Click a link or button that loads another page, and wait until that page is loaded
    (a count right after a bare click can still read the old page)."""
    with page.expect_navigation():
        link.click()


def row_status(page, job_id: int) -> str:
    return page.locator(f'#result_list .toq-live[data-job="{job_id}"]').inner_text()


@pytest.mark.parametrize("language", ["en", "pt-br"])
def test_bulk_retry_live_update_resolution_and_undelivered_results(
    page, shot, language, live_server, celery_worker, settings
):
    text = TEXT[language]
    settings.CALLBACK_URL = f"http://127.0.0.1:{free_port()}/callback"  # nothing listens there
    settings.CALLBACK_SECRET = "browser-secret"
    old = failed_jobs(count=10)
    operator = make_user(f"olga-loop-{language}", group=OPERATORS)
    base = live_server.url

    login(page, base, operator.username, PASSWORD)
    page.locator("svg#toq-daily-chart").wait_for()
    ticks = page.evaluate(
        "() => Array.from(document.querySelectorAll("
        "'#toq-daily-chart text[text-anchor=end]'), (t) => t.textContent)"
    )
    assert ticks and all(re.fullmatch(r"\d+", tick) for tick in ticks), ticks
    assert page.locator("#toq-unresolved-count").inner_text().strip() == "10"
    assert page.locator("html").get_attribute("lang") == language
    assert not axe_violations(page), axe_violations(page)
    shot.both("dashboard")

    follow(page, page.locator("nav.toq-nav").get_by_role("link", name=text["unresolved_link"]))
    assert "resolution=unresolved" in page.url
    assert page.locator("#result_list tbody tr").count() == 10
    assert page.locator("#result_list .toq-unresolved").count() == 10
    assert status_column_on_screen(page)
    # the date bar offers the one day that has jobs, not the whole month
    days = page.locator(".toplinks a:not(.date-back)").all_inner_texts()
    today = page.evaluate(
        "() => new Intl.DateTimeFormat('en-US', {month: 'short', day: 'numeric', timeZone: 'America/Sao_Paulo'}).format(new Date())"
    )
    if language == "en":
        assert days == [today]
    else:  # "30 de nov": the day first, as Brazilians write it
        assert len(days) == 1 and days[0].startswith(f"{today.split()[1]} de "), days
    assert not axe_violations(page), axe_violations(page)
    shot.both("unresolved-failures")

    page.locator("#result_list thead input#action-toggle").check()
    page.select_option("select[name=action]", "retry_selected")
    follow(page, page.locator("button[name=index], .actions button[type=submit]").first)
    assert page.locator(".toq-plan").count() == 10
    shot.both("bulk-retry-confirmation")
    follow(page, page.locator("#toq-confirm-retry"))  # no worker yet: the jobs wait queued
    messages = page.locator("ul.messagelist").inner_text()
    assert messages.count(text["retried_as"]) == 10
    new = sorted(set(Job.objects.values_list("pk", flat=True)) - set(old))
    assert len(new) == 10 and set(
        Job.objects.filter(pk__in=new).values_list("status", flat=True)
    ) == {JobStatus.PENDING}

    page.goto(f"{base}{JOBS}")
    for job_id in new:
        assert text["pending"] in row_status(page, job_id)
    page.evaluate("() => { window.toqNotReloaded = true; }")
    shot.both("retried-jobs-pending")

    celery_worker.start(extra_env={"CALLBACK_MAX_ATTEMPTS": "2"})
    wait_until(
        lambda: all(text["succeeded"] in row_status(page, job_id) for job_id in new),
        timeout=240,
        interval=1,
        what="the ten rows to turn Succeeded in place",
    )
    assert page.evaluate("() => window.toqNotReloaded === true"), "the page was reloaded"
    assert set(Job.objects.filter(pk__in=new).values_list("status", flat=True)) == {
        JobStatus.SUCCEEDED
    }
    shot.both("retried-jobs-succeeded-live")

    follow(page, page.locator("nav.toq-nav").get_by_role("link", name=text["unresolved_link"]))
    assert "resolution=unresolved" in page.url and text["no_jobs"] in page.content()
    assert page.locator("#result_list tbody tr").count() == 0
    page.goto(f"{base}{JOBS}?resolution=resolved")
    assert page.locator("#result_list .toq-resolved").count() == 10
    first_row = page.locator("#result_list tbody tr").first.inner_text()
    assert all(text[key] in first_row for key in ("retried_as", "succeeded", "resolved_by"))
    assert status_column_on_screen(page)
    shot.both("resolved-failures")

    # the backend is down: every result waits in the outbox, the oldest one probing it
    wait_until(
        lambda: (
            CallbackOutbox.objects.filter(job_id__in=new, state=OutboxState.PENDING).count() == 10
            and CallbackOutbox.objects.filter(job_id__in=new, attempts__gte=2).exists()
        ),
        timeout=120,
        what="ten pending results, one of them tried twice",
    )
    follow(page, page.locator("nav.toq-nav").get_by_role("link", name=text["undelivered_link"]))
    assert page.locator("#result_list .toq-undelivered").count() == 10
    shot.both("not-delivered")

    job_id = CallbackOutbox.objects.filter(job_id__in=new, attempts__gte=2).first().job_id
    page.goto(f"{base}{JOBS}{job_id}/change/")
    summary = page.locator(".field-delivery_text .readonly").inner_text()
    assert text["not_delivered"] in summary and "Connection refused" in summary
    assert page.locator("#toq-replay-last").is_visible()
    assert page.locator("#toq-timeline tbody tr").count() >= 4
    assert text["processed"] in page.locator("#toq-assets").inner_text()
    assert not axe_violations(page), axe_violations(page)
    shot.both("job-page")
    follow(page, page.locator("#toq-replay-last"))
    assert text["replay_title"] in page.locator("h1").inner_text()
    shot.both("replay-confirmation")

    page.goto(f"{base}/admin/")
    assert page.locator("#toq-undelivered-count").inner_text().strip() == "10"
    assert "job #" in page.locator("#toq-undelivered-oldest").inner_text()
    assert page.locator("#toq-unresolved-count").inner_text().strip() == "0"
    shot.both("dashboard-after")


def test_pages_stay_inside_the_screen_and_keep_readable_links(
    page, shot, live_server, transactional_db, local_storage_settings, processed_media
):
    """The listing page's cards, the error groups, the job page and the delivery log at
    1366 px (no sideways scroll) and 390 px; breadcrumb and card links readable (WCAG AA)."""
    listing, job = processed_media
    operator = make_user("olga-layout", group=OPERATORS)
    base = live_server.url
    login(page, base, operator.username, PASSWORD)

    page.goto(f"{base}/admin/media_jobs/listing/{listing}/")
    page.locator(".toq-storage-check").wait_for()
    assert page.locator(".toq-grid-item").count() == 3
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.reload()  # links fade to a new colour (a CSS transition): measure the settled page
        page.locator(".toq-grid-item").first.wait_for()
        for links in ("div.breadcrumbs a", ".toq-grid-item a", ".toq-nav a"):
            assert not low_contrast(page, links), (scheme, links, low_contrast(page, links))
    page.emulate_media(color_scheme="light")
    shot.both("listing-page")

    page.goto(f"{base}/admin/media_jobs/error-groups/")
    button = page.locator("a.toq-action", has_text="Retry this group").first
    lines = button.evaluate("el => el.getClientRects().length")
    height = button.evaluate("el => el.getBoundingClientRect().height")
    line_height = button.evaluate("el => parseFloat(getComputedStyle(el).lineHeight) || 20")
    assert lines == 1 and height < 2 * line_height + 16, (lines, height, line_height)
    shot.both("error-groups")

    page.goto(f"{base}{JOBS}{job}/change/")
    page.locator(".toq-storage-check").wait_for()
    badge = page.locator(".toq-storage-summary .toq-badge").first.inner_text()
    assert badge != "complete"  # the failed photo's derivatives are absent
    assert "never started" not in page.locator(".fieldBox.field-started_time").inner_text()
    shot.both("job-page-partial")

    page.goto(f"{base}/admin/media_jobs/callbackdelivery/")
    assert "CALLBACK_URL is not set" in page.locator("#toq-no-callback-url").inner_text()
    shot.both("delivery-log-without-callback-url")

    # the remaining pages, kept at both widths too
    page.goto(f"{base}/admin/media_jobs/error-groups/")
    follow(page, page.locator("a.toq-action", has_text="Retry this group").first)
    assert page.locator("#toq-confirm-retry").count() == 1
    shot.both("error-group-retry-confirmation")
    page.goto(f"{base}/admin/media_jobs/listing/{listing}/storage-check/")
    shot.both("storage-check")
    page.goto(f"{base}/admin/media_jobs/mediaasset/")
    assert page.locator("#result_list tbody tr").count() == 3
    shot.both("assets")
    follow(page, page.locator("#result_list tbody tr th a").first)
    shot.both("asset-page")
    page.goto(f"{base}{JOBS}{job}/execution/")
    assert "ran on Celery" in page.locator("#content-main").inner_text()
    shot.both("execution")
    running = JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING)
    page.goto(f"{base}{JOBS}{running.pk}/mark-failed/")
    assert page.locator("#toq-confirm-mark-failed").count() == 1
    shot.both("mark-failed-confirmation")
    page.goto(f"{base}{JOBS}{job}/history/")
    shot.both("history")

    page.goto(f"{base}{JOBS}")
    assert status_column_on_screen(page)
    cell = page.locator("#result_list td.field-error_summary .toq-clamp").first
    line_height = cell.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)")
    assert cell.bounding_box()["height"] <= 2 * line_height + 1  # two lines at most
    shot.both("jobs-list")


def test_a_staff_user_without_a_group_sees_an_explained_403(
    page, shot, live_server, transactional_db
):
    user = make_user("sam-no-group")
    login(page, live_server.url, user.username, PASSWORD)
    assert "You are not in a portal group yet" in page.locator("#toq-no-group").inner_text()
    response = page.goto(f"{live_server.url}{JOBS}")
    assert response.status == 403
    assert "media operators" in page.locator("#toq-no-group").inner_text()
    shot.both("403-without-group")
    assert all(job.status in TERMINAL_JOB_STATUSES for job in Job.objects.all())  # (nothing ran)
