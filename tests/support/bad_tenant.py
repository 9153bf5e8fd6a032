"""A tenant that answers badly on purpose, over real HTTP (stdlib server, one thread per request).

A test sets ``tenant.answers[path] = Answer(...)`` (or a list of them, used in turn,
the last one repeating) and points a TenantClient at ``tenant.url``. Requests are
recorded in ``tenant.requests``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.servers import free_port


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    declared_length: int | None = None      # a Content-Length larger than the body: a truncated answer
    delay: float = 0.0                      # seconds to wait before answering (read timeouts)

    @classmethod
    def json(cls, value: Any, status: int = 200, **headers: str) -> "Answer":
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json", **headers})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        answer = self.server.owner.next_answer(self.command, self.path, dict(self.headers))
        time.sleep(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(answer.declared_length or len(answer.body)))
        if answer.declared_length:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)
        if answer.declared_length:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "BadTenant"


class BadTenant:
    def __init__(self) -> None:
        self.port = free_port()
        self.answers: dict[str, Answer | list[Answer]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def next_answer(self, method: str, target: str, headers: dict[str, str]) -> Answer:
        path = urlsplit(target).path
        with self._lock:
            self.requests.append((method, target, headers))
            found = self.answers.get(path)
            if isinstance(found, list):
                return found.pop(0) if len(found) > 1 else found[0]
        if found is None:
            return Answer.json({"error": {"code": "Not Found", "message": {"lang": "en", "value": f"no {path}"}}},
                               status=404)
        return found

    def start(self) -> "BadTenant":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
