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
# Alerts are POSTed over HTTP(S) only: urllib would also open ftp:// or file:// URLs.
WEBHOOK_SCHEMES = ("http://", "https://")
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


def is_webhook_url(url: str) -> bool:
    return url.lower().startswith(WEBHOOK_SCHEMES)


def webhook_url_error(url: str) -> str | None:
    """The form error for a webhook URL that is not http(s): Django's URLField also takes ftp://,
    which every delivery would refuse and retry."""
    return None if not url or is_webhook_url(url) else "The webhook URL must start with http:// or https://."


def post_json(url: str, payload: dict[str, Any], idempotency_key: str) -> None:
    """POST ``payload`` as JSON; anything but a 2xx answer is a URLError.

    ``idempotency_key`` goes in the ``Idempotency-Key`` header: the same for
    every delivery of the same thing, so a receiver drops a redelivery (a POST
    that arrived but whose stamp was lost to a timeout or a killed worker).
    """
    if not is_webhook_url(url):  # a row written around the form's validation (shell, script)
        raise urllib.error.URLError("the alert webhook URL is not http:// or https://")
    headers = {"Content-Type": "application/json", "User-Agent": "flowwatch", "Idempotency-Key": idempotency_key}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310  admin-set URL
        if response.status >= 300:
            raise urllib.error.URLError(f"webhook answered HTTP {response.status}")
