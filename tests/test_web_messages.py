"""Django's messages through the lazy message middleware (apps/core/messages.py).

The storage is made only when a request adds or reads a message; a request
that does neither leaves a pending message where it was.
"""

from __future__ import annotations

import pytest

from tests.test_dashboard import METRICS, threshold_post

pytestmark = pytest.mark.django_db
SAVED = b"applies them at its next tick"


def test_a_message_is_shown_once_on_the_next_page_and_then_gone(client, superadmin):
    client.force_login(superadmin)
    assert client.post(METRICS, threshold_post(queue_warn=60)).status_code == 302
    assert SAVED in client.get(METRICS).content
    assert SAVED not in client.get(METRICS).content


def test_a_request_that_never_touches_messages_leaves_a_pending_one_in_place(client, superadmin):
    client.force_login(superadmin)
    assert client.post(METRICS, threshold_post(queue_warn=61)).status_code == 302
    response = client.get("/healthz")
    assert response.status_code == 200
    assert "messages" not in response.cookies
    assert SAVED in client.get(METRICS).content


def test_the_middleware_builds_no_storage_for_a_request_that_does_not_use_it(rf):
    from django.http import HttpResponse
    from django.utils.functional import empty

    from apps.core.messages import LazyMessageMiddleware

    request = rf.get("/healthz")
    LazyMessageMiddleware(lambda r: HttpResponse("ok"))(request)
    assert request._messages._wrapped is empty
