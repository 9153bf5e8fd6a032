"""The Content-Security-Policy forbids inline script, and the pages still work under it.

Real Chromium records every `securitypolicyviolation` event and every
console error while the metrics page goes live over its websocket, draws
its rows, and the login, docs and admin pages load.  An inline script added
on purpose at the end shows that the recorder sees a violation when there is
one.
"""

from __future__ import annotations

import pytest

from apps.core.csp import POLICY
from tests.test_browser_support import chromium  # noqa: F401  (a fixture)
from tests.test_browser_support import Controller, WebServer, open_page, wait_for_indicator

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation',
    event => window.cspViolations.push(event.violatedDirective + ' ' + event.blockedURI));
"""


@pytest.fixture(scope="module")
def stack(django_db_setup):
    server = WebServer()
    controller = Controller()
    yield server
    controller.stop()
    server.stop()


def recorded(errors: list[str]):
    """Before the page loads: record its violations, and its console errors into ``errors``."""
    def before_goto(page) -> None:
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", lambda message: errors.append(f"{message.text} {message.location.get('url')}")
                if message.type == "error" and not _favicon(message) else None)
    return before_goto


def _favicon(message) -> bool:
    """Django's admin pages name no icon: Chromium's own /favicon.ico request may log a 404."""
    return str(message.location.get("url", "")).endswith("/favicon.ico")


def test_the_metrics_page_goes_live_with_no_policy_violation(stack, chromium, superadmin):  # noqa: F811
    errors: list[str] = []
    context, page, response = open_page(chromium, stack, superadmin, before_goto=recorded(errors))
    try:
        assert response.headers["content-security-policy"] == POLICY
        wait_for_indicator(page, "live")  # the script ran and its websocket connected
        page.wait_for_function("document.querySelectorAll('tr[data-queue]').length > 0")
        assert page.evaluate("window.cspViolations") == []
        assert errors == []
        page.evaluate("""() => {  // what an injection would try
            const script = document.createElement('script');
            script.textContent = 'window.inlineRan = true;';
            document.head.appendChild(script);
        }""")
        page.wait_for_function("window.cspViolations.length > 0")
        assert page.evaluate("window.inlineRan") is None
        assert any("script-src" in text for text in page.evaluate("window.cspViolations"))
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/accounts/login/", "/docs/", "/admin/", "/admin/metrics/cmetricsettings/1/change/"])
def test_the_other_pages_load_with_no_policy_violation(stack, chromium, superadmin, path):  # noqa: F811
    errors: list[str] = []
    user = None if path == "/accounts/login/" else superadmin
    context, page, response = open_page(chromium, stack, user, path, before_goto=recorded(errors))
    try:
        assert response.status == 200
        page.wait_for_load_state("load")
        assert page.evaluate("window.cspViolations") == []
        assert errors == []
    finally:
        context.close()
