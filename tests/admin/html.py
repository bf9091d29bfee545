"""Reading the jobs list's HTML in the admin tests: the job ids of its rows, in order, and the
HTML of one row."""

from __future__ import annotations

import re

ROW_ID = re.compile(
    r'<th class="field-id"><a href="/admin/media_jobs/mediaprocessingjob/(\d+)/change/'
)


def job_ids_in(html: str) -> list[int]:
    """Job ids in the order the list shows them (the id column links to the job page)."""
    return [int(i) for i in ROW_ID.findall(html)]


def row_of(html: str, job_id: int) -> str:
    """The HTML of the list's row of ``job_id`` (from its id cell to the next row)."""
    rows = html.split('<th class="field-id">')[1:]
    return next(
        row for row in rows if f"/mediaprocessingjob/{job_id}/change/" in row.split("</th>")[0]
    )
