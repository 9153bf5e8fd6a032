"""Notification delivery shared by metric events and message alerts.

Each channel (e-mail, webhook) is tried whatever the other did; the caller
stamps what each channel delivered on its own rows (``emailed_at``,
``webhook_at``) and raises the first failure afterwards, so that the task's
retry sends only what is still missing: delivered once per channel.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request
from typing import Any, Callable

from django.conf import settings
from django.core.mail import send_mail

logger = logging.getLogger("flowwatch.delivery")

WEBHOOK_TIMEOUT = 10
# What a retry may cure: the mail server or the webhook's host did not take it.
DELIVERY_ERRORS = (smtplib.SMTPException, urllib.error.URLError, OSError)


def deliver(channel: str, errors: list[Exception], send: Callable[[], int]) -> int:
    """Run one channel's ``send``; a delivery failure is logged and kept in ``errors``."""
    try:
        return send()
    except DELIVERY_ERRORS as exc:
        logger.warning("alert %s failed (the task retries it): %s", channel, type(exc).__name__)
        errors.append(exc)
        return 0


def send_email(recipients: list[str], subject: str, body: str) -> None:
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)


def post_json(url: str, payload: dict[str, Any]) -> None:
    """POST ``payload`` as JSON; anything but a 2xx answer is a URLError."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "flowwatch"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310  admin-set URL
        if response.status >= 300:
            raise urllib.error.URLError(f"webhook answered HTTP {response.status}")
