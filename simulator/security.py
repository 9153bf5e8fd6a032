"""OAuth2 client-credentials tokens, basic auth, and the request rate limit."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import time
from typing import Callable
from urllib.parse import parse_qsl


class Tokens:
    """Issued bearer tokens and when each expires (monotonic seconds)."""

    def __init__(self, client_id: str, client_secret: str, ttl: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client_id, self._secret, self.ttl, self.clock = client_id, client_secret, ttl, clock
        self._expiry: dict[str, float] = {}
        self.issued = 0

    def credentials_match(self, client_id: str, secret: str) -> bool:
        return (hmac.compare_digest(client_id.encode(), self.client_id.encode())
                & hmac.compare_digest(secret.encode(), self._secret.encode()))

    def issue(self) -> str:
        now = self.clock()
        # Expired tokens are dropped here so that the table stays small.
        self._expiry = {token: end for token, end in self._expiry.items() if end > now}
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self.ttl
        self.issued += 1
        return token

    def valid(self, token: str) -> bool:
        return self._expiry.get(token, 0.0) > self.clock()

    def expire_all(self) -> int:
        """Test control: every issued token is expired from now on."""
        count = len(self._expiry)
        self._expiry = dict.fromkeys(self._expiry, 0.0)
        return count


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic …`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def token_request_credentials(header: str, body: bytes) -> tuple[str, str] | None:
    """The client's credentials from Basic auth or, as some clients send them, form fields."""
    found = basic_credentials(header)
    if found:
        return found
    form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    if form.get("client_id") and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    return None


class RateLimit:
    """A token bucket: ``per_second`` requests a second, bursts up to one second's worth."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.throttled = 0
        self.set(per_second)

    def set(self, per_second: int) -> None:
        self.per_second = per_second
        self.tokens = float(per_second)
        self.updated = self.clock()

    def retry_after(self) -> int:
        """0 when the request may pass (and is counted), else whole seconds to wait."""
        if self.per_second <= 0:
            return 0
        now = self.clock()
        self.tokens = min(float(self.per_second), self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        self.throttled += 1
        return max(1, math.ceil((1.0 - self.tokens) / self.per_second))
