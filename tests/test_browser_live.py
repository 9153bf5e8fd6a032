"""An open metrics page stays live: its one websocket outlasts every timeout in play.

uvicorn (with production's websocket implementation) and a controller that
ticks a little slower than channels-redis' BZPOPMIN wait, so that between two
snapshots the layer's wait ends empty: the page must keep its first websocket
and its "live" indicator for several ticks, longer than every timeout in play
(tests/test_ws_hold.py, HOLD_SECONDS).
"""

from __future__ import annotations

import math

import pytest

from tests.test_browser_support import chromium  # noqa: F401  (a fixture)
from tests.test_browser_support import PRODUCTION_WS, Controller, WebServer, open_page, wait_for_indicator
from tests.test_metrics_support import wait_for
from tests.test_ws_hold import HOLD_SECONDS, INTERVAL

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

# New snapshots shown while the indicator is watched: they span one interval
# fewer than their number, longer than HOLD_SECONDS.
SNAPSHOTS_SHOWN = math.ceil(HOLD_SECONDS / INTERVAL) + 1
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
    server = WebServer(ws=PRODUCTION_WS)
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
