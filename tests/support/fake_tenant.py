"""A small tenant over real HTTP whose messages each test sets exactly.

It speaks the part of the OData v1 dialect the pipeline reads: an OAuth2
token endpoint, ``MessageProcessingLogs`` filtered on LogEnd, ordered by
LogEnd and paged with a relative ``__next``, and per message its
ErrorInformation text, CustomHeaderProperties and Attachments.  The bundled
simulator plays a whole tenant; this one lets a test change one message's
status or count the pages asked for.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from tests.servers import free_port

CLIENT_ID, CLIENT_SECRET, TOKEN = "pipeline-client", "s3cret-pipeline-value", "token-abc"
LITERAL = re.compile(r"LogEnd (ge|lt) datetime'([^']+)'")


def odata_date(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


class FakeTenant:
    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.messages: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self.headers: dict[str, list[dict]] = {}
        self.requests: Counter = Counter()
        self.selects: set[str] = set()  # the $select of every page read (this tenant sends all fields anyway)
        self.tops: set[str] = set()  # the $top of every page read (this tenant pages by its own page_size)
        # How many of the next reads of each kind ("pages", "details") are answered 503 (Retry-After: 0).
        self.busy: Counter = Counter()
        self.lock = threading.Lock()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    url = property(lambda self: f"http://127.0.0.1:{self.port}/api/v1")
    token_url = property(lambda self: f"http://127.0.0.1:{self.port}/oauth/token")
    client_id, client_secret = CLIENT_ID, CLIENT_SECRET

    def start(self) -> "FakeTenant":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, guid: str, status: str, log_end: datetime, iflow: str = "OrderToCash",
            correlation_id: str = "", error: str | None = None, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.messages[guid] = {
                "MessageGuid": guid, "CorrelationId": correlation_id or f"corr-{guid}", "ApplicationMessageId": "",
                "IntegrationFlowName": iflow, "Status": status, "CustomStatus": status, "Sender": "S4",
                "Receiver": "CRM", "LogStart": odata_date(log_end), "LogEnd": odata_date(log_end),
            }
            if error is not None:
                self.errors[guid] = error
            self.headers[guid] = [{"Id": f"{guid}-{i}", "Name": k, "Value": v}
                                  for i, (k, v) in enumerate((headers or {}).items())]

    def change(self, guid: str, status: str, log_end: datetime) -> None:
        with self.lock:
            self.messages[guid].update(Status=status, CustomStatus=status, LogEnd=odata_date(log_end))

    def take_busy(self, kind: str) -> bool:
        with self.lock:
            if self.busy[kind] <= 0:
                return False
            self.busy[kind] -= 1
            self.requests[f"busy {kind}"] += 1
            return True

    def select(self, query: dict) -> list[dict]:
        bounds = dict((op, datetime.fromisoformat(v).replace(tzinfo=timezone.utc))
                      for op, v in LITERAL.findall(query.get("$filter", [""])[0]))
        with self.lock:
            rows = list(self.messages.values())
        def end(row: dict) -> datetime:
            return datetime.fromtimestamp(int(row["LogEnd"][6:-2]) / 1000, tz=timezone.utc)
        rows = [r for r in rows if ("ge" not in bounds or end(r) >= bounds["ge"])
                and ("lt" not in bounds or end(r) < bounds["lt"])]
        return sorted(rows, key=lambda r: (end(r), r["MessageGuid"]))

    def _handler(self):
        tenant = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json", **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                tenant.requests["token"] += 1
                self._send(200, json.dumps({"access_token": TOKEN, "token_type": "bearer",
                                            "expires_in": 3600}).encode())

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, b'{"error": {"code": "401", "message": {"value": "no token"}}}')
                parts = urlsplit(self.path)
                path, query = unquote(parts.path).removeprefix("/api/v1/"), parse_qs(parts.query)
                tenant.requests[path.split("(")[0].split("/")[-1]] += 1
                found = re.fullmatch(r"MessageProcessingLogs\('([^']+)'\)/(.+)", path)
                if path == "MessageProcessingLogs":
                    kind = "pages"
                elif found and found.group(2) == "ErrorInformation/$value":
                    kind = "details"
                else:
                    kind = ""
                if kind and tenant.take_busy(kind):
                    return self._send(503, b'{"error": {"code": "503", "message": {"value": "busy"}}}',
                                      Retry_After="0")
                if path == "MessageProcessingLogs":
                    return self._logs(query)
                if found and found.group(1) not in tenant.messages:
                    return self._send(404, b'{"error": {"code": "404", "message": {"value": "no such message"}}}')
                if found and found.group(2) == "ErrorInformation/$value":
                    text = tenant.errors.get(found.group(1))
                    return self._send(200, text.encode(), "text/plain") if text is not None else \
                        self._send(404, b'{"error": {"code": "404", "message": {"value": "none"}}}')
                if found and found.group(2) == "CustomHeaderProperties":
                    headers = tenant.headers.get(found.group(1), [])
                    return self._send(200, json.dumps({"d": {"results": headers}}).encode())
                if found and found.group(2) == "Attachments":
                    return self._send(200, json.dumps({"d": {"results": []}}).encode())
                self._send(404, b'{"error": {"code": "404", "message": {"value": "unknown path"}}}')

            def _logs(self, query: dict) -> None:
                rows = tenant.select(query)
                skip = int(query.get("$skiptoken", ["0"])[0])
                page = rows[skip:skip + tenant.page_size]
                body: dict = {"results": page}
                if skip + tenant.page_size < len(rows):
                    rest = {k: v[0] for k, v in query.items() if k != "$skiptoken"}
                    rest["$skiptoken"] = str(skip + tenant.page_size)
                    body["__next"] = f"MessageProcessingLogs?{urlencode(rest, quote_via=quote)}"
                tenant.requests["pages"] += 1
                tenant.selects.add(query.get("$select", [""])[0])
                tenant.tops.add(query.get("$top", [""])[0])
                self._send(200, json.dumps({"d": body}).encode())

        return Handler
