"""The ASGI application: token endpoint, authentication, rate limit, control endpoints.

Paths:
  POST /oauth/token?grant_type=client_credentials   OAuth2 client credentials (Basic auth or form fields)
  GET  /api/v1/...                                   the tenant API (Bearer token or Basic auth)
  GET  /_sim/health                                  readiness, no credentials
  GET  /_sim/stats                                   counters, for tests and the benchmark
  POST /_sim/expire-tokens                           test control: every issued token expires now
  POST /_sim/rate-limit?per_second=N                 test control: change the rate limit (0 = off)
The control POSTs take the client credentials as Basic auth.
"""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from simulator.api import JSON, Api, Request, Response, failure
from simulator.config import Options
from simulator.security import RateLimit, Tokens, basic_credentials, token_request_credentials

API_PREFIX = "/api/v1"
MAX_BODY = 64 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value).encode(), JSON)


class Simulator:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.api = Api(options)
        self.tokens = Tokens(options.client_id, options.client_secret, options.token_ttl)
        self.limit = RateLimit(options.rate_limit)
        self.counters = {"requests": 0, "unauthorized": 0}
        self.started = time.time()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive) if scope["method"] == "POST" else b""
        response = self.respond(scope, body)
        headers = [(b"content-type", response.content_type.encode()),
                   (b"content-length", str(len(response.body)).encode())]
        headers += [(name.encode(), value.encode()) for name, value in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        del response  # the page's body is freed before the heap is trimmed
        self.api.trim_if_due()

    def respond(self, scope: Scope, body: bytes) -> Response:
        path, method = scope["path"], scope["method"]
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        if path == "/oauth/token":
            return self.token(method, params, headers.get("authorization", ""), body)
        if path.startswith("/_sim/"):
            return self.control(path, method, params, headers.get("authorization", ""))
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return self.tenant_api(path[len(API_PREFIX):], method, params, headers, scope)
        return failure(404, "Not Found", f"No resource at {path}")

    def tenant_api(self, path: str, method: str, params: dict[str, str], headers: dict[str, str],
                   scope: Scope) -> Response:
        self.counters["requests"] += 1
        wait = self.limit.retry_after()
        if wait:
            return failure(429, "Too Many Requests", "Rate limit exceeded: too many requests, try again later",
                           (("retry-after", str(wait)),))
        if not self.authorized(headers.get("authorization", "")):
            self.counters["unauthorized"] += 1
            return failure(401, "Unauthorized", "Authentication failed: the access token is expired or invalid",
                           (("www-authenticate", 'Bearer realm="simulator"'),))
        host = headers.get("host") or "%s:%s" % tuple(scope.get("server") or ("127.0.0.1", self.options.port))
        root = f"{scope.get('scheme', 'http')}://{host}{API_PREFIX}"
        request = Request(method, params, root, int(time.time() * 1000))
        return self.api.handle(path, request)

    def authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.tokens.valid(value.strip())
        found = basic_credentials(header)
        return bool(found) and self.tokens.credentials_match(*found)

    def token(self, method: str, params: dict[str, str], authorization: str, body: bytes) -> Response:
        if method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "use POST"})
        form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        grant = params.get("grant_type") or form.get("grant_type", "")
        if grant != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type",
                               "error_description": "grant_type must be client_credentials"})
        found = token_request_credentials(authorization, body)
        if not found or not self.tokens.credentials_match(*found):
            return _json(401, {"error": "unauthorized", "error_description": "Bad credentials"})
        return _json(200, {"access_token": self.tokens.issue(), "token_type": "bearer",
                           "expires_in": self.options.token_ttl, "scope": "it!b1.MonitoringDataRead"})

    def control(self, path: str, method: str, params: dict[str, str], authorization: str) -> Response:
        if path == "/_sim/health":
            return _json(200, {"status": "ok", "seed": self.options.seed,
                               "uptime": round(time.time() - self.started, 3)})
        if path == "/_sim/stats":
            return _json(200, {**self.counters, "throttled": self.limit.throttled, "rate_limit": self.limit.per_second,
                               "tokens_issued": self.tokens.issued, "served_entries": self.api.served_entries})
        found = basic_credentials(authorization)
        if method != "POST" or not found or not self.tokens.credentials_match(*found):
            return _json(401 if method == "POST" else 405,
                         {"error": "control needs POST with the client credentials as Basic auth"})
        if path == "/_sim/expire-tokens":
            return _json(200, {"expired": self.tokens.expire_all()})
        if path == "/_sim/rate-limit" and params.get("per_second", "").isdigit():
            self.limit.set(int(params["per_second"]))
            return _json(200, {"rate_limit": self.limit.per_second})
        return _json(400, {"error": f"unknown control {path} or missing per_second"})


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
