"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against real uvicorn
and Celery worker processes."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from cli.banner import Banner

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Screenshots land here (git-ignored), to be looked at after a run.
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Chromium reports every 4xx answer on the console; the ones the tests cause are expected.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of 4")
RUNNING_SLEEP = {"kind": "sleep", "params": {"seconds": 60, "steps": 60}}


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[Browser]:
    """Module-scoped, and started after the servers: while Playwright's sync API is in use, its
    event loop runs in this thread, where nothing else may then call asyncio.run()."""
    if not CHROMIUM.exists():
        message = (
            f"{CHROMIUM} not found: the dashboard tests need Debian's chromium "
            "(apt-get install chromium; .ci/run installs it)"
        )
        # In CI (and under .ci/run) a missing browser is a failure, never a quiet skip.
        if os.environ.get("CI") or os.environ.get("JOBQ_TEST_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.search(message.text):
            problems.append(f"console: {message.text}")

    opened.on("console", on_console)
    yield opened
    context.close()
    # Script errors and CSP refusals show up here.
    assert not problems, problems


def sign_in(page: Page, token: str) -> None:
    page.goto(f"/#token={token}")
    expect(page.locator("#jobs-table")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")


def submit(http: httpx.Client, body: dict[str, Any]) -> str:
    response = http.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-body tr[data-id="{job_id}"]')


def test_the_printed_url_signs_in_and_shows_the_table(
    page: Page, base_url: str, token: str, subject: str
) -> None:
    printed = Banner(
        api_url=base_url,
        flower_url="http://127.0.0.1:5555",
        flower_user="admin",
        flower_password="x",
        token=token,
        database="",
        redis="",
    )
    assert f"  Dashboard  {base_url}/#token={token}" in printed.lines()

    response = page.goto(printed.dashboard_url)

    assert response is not None and response.ok
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self' ws://127.0.0.1:" in policy
    expect(page.locator("#jobs-table")).to_be_visible()
    expect(page.locator("#who-name")).to_have_text(f"Signed in as {subject}")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#jobs-empty")).to_be_visible()
    # The token left the address bar for the tab's own storage.
    assert page.url == f"{base_url}/"
    assert page.evaluate("sessionStorage.getItem('jobq.token')") == token
    workers = page.locator('#stats [data-stat="workers"] .stat-value')
    expect(workers).to_have_text(re.compile(r"^[1-9]"))
    expect(page.locator("#flower-link")).to_have_attribute("href", re.compile(r"^http://"))

    page.click("#sign-out")

    expect(page.locator("#token-input")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('jobq.token')") is None


def test_a_pasted_token_signs_in_and_a_bad_one_is_refused(page: Page, token: str) -> None:
    page.goto("/")
    page.fill("#token-input", "not-a-token")
    page.click("#signin-form button")
    expect(page.locator("#signin-error")).to_contain_text("refused")

    page.fill("#token-input", token)
    page.press("#token-input", "Enter")

    expect(page.locator("#jobs-table")).to_be_visible()


def test_a_sleep_job_from_the_form_fills_its_bar_and_succeeds(page: Page, token: str) -> None:
    sign_in(page, token)
    # Every percent the table's bars show, as they change.
    page.evaluate(
        """() => {
        window.seenPercents = [];
        new MutationObserver((changes) => {
          for (const change of changes) {
            const value = change.target.getAttribute('aria-valuenow');
            if (value !== null) window.seenPercents.push(Number(value));
          }
        }).observe(document.querySelector('#jobs-body'),
          {subtree: true, attributes: true, attributeFilter: ['aria-valuenow']});
      }"""
    )
    page.select_option("#submit-kind", "sleep")
    expect(page.locator("#param-steps")).to_have_value("10")
    page.fill("#param-seconds", "2")
    page.fill("#param-steps", "5")

    page.click("#submit-button")

    expect(page.locator("#submit-result")).to_contain_text("Submitted sleep job")
    job = page.locator("#jobs-body tr").first
    expect(job.locator(".badge")).to_have_attribute("data-status", "running", timeout=30_000)
    expect(job.locator(".bar")).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    expect(job.locator(".badge")).to_have_attribute("data-status", "succeeded")
    expect(job.locator(".badge")).to_have_text(re.compile("succeeded"))
    seen = page.evaluate("window.seenPercents")
    assert any(0 < percent < 100 for percent in seen), seen
    assert seen == sorted(seen), seen


def test_a_running_job_is_cancelled_from_its_view(
    page: Page, token: str, http: httpx.Client
) -> None:
    sign_in(page, token)
    job_id = submit(http, RUNNING_SLEEP)
    badge = row(page, job_id).locator(".badge")
    expect(badge).to_have_attribute("data-status", "running", timeout=30_000)

    row(page, job_id).click()

    view = page.locator("#job-view")
    expect(view).to_be_visible()
    assert page.url.endswith(f"#job={job_id}")
    expect(view.locator("#job-params")).to_contain_text('"seconds": 60')
    expect(view.locator("#job-events li").first).to_contain_text("snapshot")
    view.locator("#job-cancel").click()
    expect(view.locator("#job-badge-line .badge")).to_have_attribute(
        "data-status", "cancelled", timeout=20_000
    )
    expect(view.locator("#job-outcome")).to_contain_text("cancelled")
    expect(view.locator("#job-retry")).to_be_visible()
    expect(view.locator("#job-cancel")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(view).to_be_hidden()
    expect(badge).to_have_attribute("data-status", "cancelled")
    assert http.get(f"/jobs/{job_id}").json()["status"] == "cancelled"


def test_bad_params_show_the_servers_message_beside_the_field(page: Page, token: str) -> None:
    sign_in(page, token)
    page.select_option("#submit-kind", "sleep")
    page.fill("#param-seconds", "-1")

    page.click("#submit-button")

    expect(page.locator("#error-param-seconds")).to_contain_text("greater than or equal to 0")
    expect(page.locator("#param-seconds")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#param-seconds")).to_be_focused()
    expect(page.locator("#error-param-steps")).to_be_hidden()
    expect(page.locator("#jobs-body tr")).to_have_count(0)


def test_screenshots_of_the_table_the_job_view_and_a_narrow_window(
    page: Page, token: str, http: httpx.Client, tmp_path: Path
) -> None:
    finished = [
        submit(http, {"kind": "echo", "params": {"message": "hello"}}),
        submit(http, {"kind": "sleep", "params": {"seconds": 0.5, "steps": 5}}),
        submit(http, {"kind": "fail", "params": {"retryable": False}}),
    ]
    cancelled = submit(http, {**RUNNING_SLEEP, "delay_seconds": 600})
    http.post(f"/jobs/{cancelled}/cancel")
    queued = submit(http, {**RUNNING_SLEEP, "delay_seconds": 600})
    running = submit(http, {"kind": "sleep", "params": {"seconds": 30, "steps": 100}})
    sign_in(page, token)
    for job_id in finished:
        expect(row(page, job_id).locator(".badge")).to_have_attribute(
            "data-status", re.compile("succeeded|failed"), timeout=30_000
        )
    expect(row(page, running).locator(".bar")).to_have_attribute(
        "aria-valuenow", re.compile(r"^[1-9]"), timeout=30_000
    )
    expect(row(page, queued).locator(".badge")).to_have_attribute("data-status", "queued")
    expect(page.locator('#stats [data-stat="workers"]')).to_be_visible()

    shots = [save(page, tmp_path, "dashboard.png")]
    page.goto(f"/#job={running}")
    expect(page.locator("#job-view #job-events li").first).to_be_visible()
    shots.append(save(page, tmp_path, "dashboard-job.png"))
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 420, "height": 900})
    expect(page.locator("th.col-id")).to_be_hidden()
    shots.append(save(page, tmp_path, "dashboard-narrow.png", full_page=True))
    http.post(f"/jobs/{running}/cancel")
    http.post(f"/jobs/{queued}/cancel")

    assert all(shot.stat().st_size > 10_000 for shot in shots)


def test_a_finished_job_is_retried_from_its_view(
    page: Page, token: str, http: httpx.Client
) -> None:
    job_id = submit(http, {**RUNNING_SLEEP, "delay_seconds": 600})
    http.post(f"/jobs/{job_id}/cancel")
    sign_in(page, token)
    page.goto(f"/#job={job_id}")
    view = page.locator("#job-view")
    expect(view.locator("#job-badge-line .badge")).to_have_attribute("data-status", "cancelled")

    view.locator("#job-retry").click()

    expect(page).to_have_url(re.compile(r"#job=(?!" + job_id + ")"))
    expect(view.locator("#job-action-result")).to_have_text(f"A retry of job {job_id[:8]}.")
    retried = page.url.rsplit("=", 1)[1]
    expect(view.locator("#job-params")).to_contain_text('"seconds": 60')
    expect(row(page, retried)).to_be_visible()
    http.post(f"/jobs/{retried}/cancel")
    expect(view.locator("#job-badge-line .badge")).to_have_attribute(
        "data-status", "cancelled", timeout=20_000
    )


def test_rows_are_reached_and_opened_by_keyboard(
    page: Page, token: str, http: httpx.Client
) -> None:
    first = submit(http, {"kind": "echo", "params": {"message": "one"}, "delay_seconds": 600})
    second = submit(http, {"kind": "echo", "params": {"message": "two"}, "delay_seconds": 600})
    sign_in(page, token)
    expect(page.locator("#jobs-body tr")).to_have_count(2)
    page.focus("#filter-kind")

    page.keyboard.press("Tab")
    expect(row(page, second)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(row(page, first)).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("#job-view")).to_be_visible()
    expect(page.locator("#job-params")).to_contain_text('"one"')
    page.keyboard.press("Escape")
    expect(page.locator("#job-view")).to_be_hidden()
    expect(row(page, first)).to_be_focused()
    page.keyboard.press(" ")
    expect(page.locator("#job-view")).to_be_visible()
    for job_id in (first, second):
        http.post(f"/jobs/{job_id}/cancel")


def test_filters_and_load_more_page_through_history(
    page: Page, token: str, http: httpx.Client
) -> None:
    later = {"kind": "echo", "params": {"message": "later"}, "delay_seconds": 600}
    echoes = [submit(http, later) for _ in range(55)]
    slept = submit(http, {**RUNNING_SLEEP, "delay_seconds": 600})
    http.post(f"/jobs/{echoes[0]}/cancel")
    sign_in(page, token)
    rows = page.locator("#jobs-body tr")
    expect(rows).to_have_count(50)

    page.click("#load-more")

    expect(rows).to_have_count(56)
    expect(page.locator("#load-more")).to_be_hidden()
    page.select_option("#filter-kind", "sleep")
    expect(rows).to_have_count(1)
    expect(row(page, slept)).to_be_visible()
    page.select_option("#filter-kind", "")
    page.select_option("#filter-status", "cancelled")
    expect(rows).to_have_count(1)
    expect(row(page, echoes[0])).to_be_visible()
    # A job that ends while the filter shows only cancelled ones joins the table.
    http.post(f"/jobs/{slept}/cancel")
    expect(row(page, slept)).to_be_visible()
    expect(rows).to_have_count(2)
    for job_id in echoes[1:]:
        http.post(f"/jobs/{job_id}/cancel")


def test_a_thousand_rows_update_in_place_within_a_frame(page: Page, token: str) -> None:
    sign_in(page, token)
    measured = page.evaluate(
        """async () => {
        const { JobTable } = await import('/static/jobs-table.js');
        const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
        const table = document.createElement('table');
        table.className = 'jobs-table';
        const body = document.createElement('tbody');
        table.append(body);
        document.querySelector('#jobs-table').after(table);
        const jobs = new JobTable(body, { onOpen() {}, onChange() {} });
        const now = Date.now();
        const made = Array.from({ length: 1000 }, (_, i) => ({
          id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
          kind: 'sleep', status: 'running', progress: null, params: {},
          created_at: new Date(now - i * 1000).toISOString(),
          started_at: new Date(now - i * 1000).toISOString(), finished_at: null,
        }));
        jobs.append(made);
        await frame();
        await frame();
        const rows = [...body.children];
        // Each frame's redraw, with the layout it causes.
        const flush = jobs.flush.bind(jobs);
        const frames = [];
        jobs.flush = () => {
          const started = performance.now();
          flush();
          void document.body.offsetHeight;
          frames.push(performance.now() - started);
        };
        const handling = [];
        for (let round = 1; round <= 10; round++) {
          const started = performance.now();
          for (const job of made) {
            jobs.apply({
              type: 'progress', job_id: job.id, seq: round, status: 'running',
              progress: { current: round, total: 10, percent: round * 10, message: null },
              ts: new Date().toISOString(),
            });
          }
          handling.push(performance.now() - started);
          await frame();
        }
        // What redrawing every row would cost, on this machine at this moment.
        const everyRow = [];
        for (let i = 0; i < 3; i++) {
          const started = performance.now();
          for (const cell of body.querySelectorAll('.col-age')) cell.textContent = `${i}s`;
          void document.body.offsetHeight;
          everyRow.push(performance.now() - started);
        }
        const redrawn = jobs.visible.size;
        const lastBar = () => body.lastElementChild.querySelector('.bar');
        const before = lastBar().getAttribute('aria-valuenow');
        body.lastElementChild.scrollIntoView();
        for (let i = 0; i < 5 && lastBar().getAttribute('aria-valuenow') !== '100'; i++) {
          await frame();
        }
        return {
          handling, frames, everyRow, redrawn, before,
          sameRows: rows.every((row, i) => body.children[i] === row),
          count: body.children.length,
          last: lastBar().getAttribute('aria-valuenow'),
        };
      }"""
    )

    assert measured["count"] == 1000 and measured["sameRows"]
    # Only the rows on or near the screen are redrawn; one scrolled to is brought up to date.
    assert measured["redrawn"] < 100 and measured["before"] is None
    assert measured["last"] == "100"
    # Timings are compared with what redrawing every row costs here and now, so that a busy
    # test machine does not decide the outcome; the medians ride out the odd slow frame.
    frames, handling = sorted(measured["frames"]), sorted(measured["handling"])
    every_row = sorted(measured["everyRow"])[1]
    assert frames[len(frames) // 2] < every_row / 2, measured
    assert handling[len(handling) // 2] < every_row / 2, measured


def save(page: Page, tmp_path: Path, name: str, full_page: bool = False) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=full_page)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)
    return shot
