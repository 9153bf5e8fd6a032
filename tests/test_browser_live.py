"""An open metrics page stays live: its one websocket outlasts every timeout in play.

uvicorn and a controller that ticks a little slower than channels-redis'
BZPOPMIN wait, so that between two snapshots the layer's wait ends empty: the
page must keep its first websocket and its "live" indicator for several ticks.
"""

from __future__ import annotations

import pytest

from tests.test_browser_support import chromium  # noqa: F401  (a fixture)
from tests.test_browser_support import Controller, WebServer, open_page, wait_for_indicator
from tests.test_metrics_support import wait_for
from tests.test_ws_hold import INTERVAL

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

# New snapshots shown while the indicator is watched: four span three
# intervals, longer than three of the layer's waits.
SNAPSHOTS_SHOWN = 4
# Generous, for a loaded 2-core machine: a page without snapshots fails, a slow one does not.
HOLD_TIMEOUT_MS = int((SNAPSHOTS_SHOWN + 2) * INTERVAL * 4 * 1000)

# Every text and data-state #live-indicator takes from now on, and every new
# collected-at the page shows; MutationObserver misses no change between samples.
RECORD_PAGE = """() => {
    window.indicatorSeen = [];
    window.collectedSeen = [];
    const indicator = document.getElementById('live-indicator');
    const collected = document.getElementById('collected-at');
    new MutationObserver(() => {
        window.indicatorSeen.push(indicator.dataset.state + ' ' + indicator.textContent);
    }).observe(indicator, {attributes: true, childList: true, characterData: true, subtree: true});
    new MutationObserver(() => {
        const at = collected.dataset.collectedAt;
        if (!window.collectedSeen.includes(at)) window.collectedSeen.push(at);
    }).observe(collected, {attributes: true, attributeFilter: ['data-collected-at']});
}"""


@pytest.fixture(scope="module")
def stack(django_db_setup):
    server = WebServer()
    controller = Controller(interval=INTERVAL)
    yield server
    controller.stop()
    server.stop()


def test_an_open_page_stays_live_on_one_websocket_across_several_ticks(stack, chromium, superadmin):  # noqa: F811
    opened, closed = [], []

    def watch_sockets(page) -> None:
        page.on("websocket", lambda socket: (opened.append(socket.url),
                                             socket.on("close", lambda s: closed.append(s.url))))

    context, page, _ = open_page(chromium, stack, superadmin, before_goto=watch_sockets)
    try:
        wait_for_indicator(page, "live")
        page.evaluate(RECORD_PAGE)
        # Polled from here: the page's CSP forbids the eval that wait_for_function's in-page polling uses.
        wait_for(lambda: page.evaluate("window.collectedSeen.length") >= SNAPSHOTS_SHOWN,
                 timeout=HOLD_TIMEOUT_MS / 1000, interval=0.25)
        seen = page.evaluate("window.indicatorSeen")
        assert seen and set(seen) == {"live live"}, seen
        assert page.get_attribute("#live-indicator", "data-state") == "live"
        assert (len(opened), closed) == (1, []), (opened, closed)
    finally:
        context.close()
