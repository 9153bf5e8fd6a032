"""The metrics page in real headless Chromium, served by uvicorn, fed by the real controller."""

from __future__ import annotations

import pytest

from tests.test_browser_support import chromium  # noqa: F401  (a fixture)
from tests.test_browser_support import (
    METRICS, Controller, FakeConsumers, WebServer, docs_screenshot_path, drop_queues, open_page, push,
    wait_for_indicator, wait_for_row,
)
from workers.queues import QUEUE_NAMES

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]


@pytest.fixture(scope="module")
def broker(django_db_setup, redis_server):
    client = redis_server.client(0)
    drop_queues(client, *QUEUE_NAMES)
    return client


@pytest.fixture(scope="module")
def stack(broker):
    """uvicorn + run_controller --interval 1 + an idle, healthy consumer heartbeat."""
    consumers = FakeConsumers(broker)
    consumers.start()
    server = WebServer()
    controller = Controller()
    yield server
    controller.stop()
    server.stop()
    consumers.stop()


@pytest.fixture
def page_for(stack, chromium):
    contexts = []

    def opener(user, path: str = METRICS):
        context, page, response = open_page(chromium, stack, user, path)
        contexts.append(context)
        return page, response

    yield opener
    for context in contexts:
        context.close()


def test_the_page_lists_every_queue_of_the_table_live(page_for, superadmin):
    page, response = page_for(superadmin)
    assert response.status == 200
    wait_for_indicator(page, "live")
    page.wait_for_function(
        """() => [...document.querySelectorAll('tr[data-queue] [data-field="depth"]')]
                 .every(cell => cell.textContent !== '—')""")
    assert page.eval_on_selector_all("tr[data-queue]", "rows => rows.map(r => r.dataset.queue)") == list(QUEUE_NAMES)


def test_pushing_messages_changes_the_row_and_badge_without_a_reload(page_for, superadmin, broker):
    from apps.metrics.models import QueueThreshold

    QueueThreshold.objects.create(queue="iflow_download", warn=3, critical=6)
    page, _ = page_for(superadmin)
    wait_for_indicator(page, "live")
    wait_for_row(page, "iflow_download", "0", "ok")
    page.evaluate("window.sameDocument = true")
    try:
        push(broker, "iflow_download", 4)
        wait_for_row(page, "iflow_download", "4", "warn")
        push(broker, "iflow_download", 3)
        wait_for_row(page, "iflow_download", "7", "critical")
    finally:
        drop_queues(broker, "iflow_download")
    reasons = page.inner_text('tr[data-queue="iflow_download"] .reasons')
    assert "depth 7 >= critical 6" in reasons
    assert page.evaluate("window.sameDocument") is True  # applied live, not by reloading


def test_editing_a_threshold_changes_the_badge(page_for, superadmin, broker, tmp_path):
    push(broker, "archive_data", 5)
    try:
        page, _ = page_for(superadmin)
        wait_for_row(page, "archive_data", "5", "ok")
        page.fill("#id_queue_warn", "4")
        page.click("#save-thresholds")
        page.wait_for_selector("text=applies them at its next tick")
        wait_for_row(page, "archive_data", "5", "warn")
        page.wait_for_selector('#event-list li:has-text("queue:archive_data")')
        wait_for_indicator(page, "live")
        shot = docs_screenshot_path(tmp_path)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000  # a rendered page, not an empty frame
    finally:
        drop_queues(broker, "archive_data")


def test_an_invalid_threshold_shows_its_error_next_to_the_field(page_for, superadmin):
    page, _ = page_for(superadmin)
    page.fill("#id_queue_warn", "20000")
    page.click("#save-thresholds")
    error = page.locator("tr.has-error", has=page.locator("#id_queue_warn"))
    assert "must be below the critical one" in error.inner_text()


def test_a_non_superadmin_is_refused_the_page_and_the_websocket(page_for, outsider):
    page, response = page_for(outsider)
    assert response.status == 403
    close_code = page.evaluate(
        """() => new Promise(resolve => {
            const socket = new WebSocket(`ws://${location.host}/ws/superadmin/metrics/`);
            socket.onclose = event => resolve(event.code);
        })""")
    assert close_code == 4403


def test_an_anonymous_visitor_lands_on_the_login_page_and_gets_back(page_for, superadmin):
    from tests.conftest import PASSWORD

    page, _ = page_for(None)
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "superadmin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{METRICS}")
    wait_for_indicator(page, "live")
