"""The /api/v1 resources: one handler per path pattern, dispatched by a table."""

from __future__ import annotations

import re
import time
from typing import Any, Callable, NamedTuple
from urllib.parse import quote

from simulator import content, odata
from simulator.config import Options
from simulator.flows import FLOW_INDEX, FLOWS, PACKAGE_INDEX
from simulator.messages import Record, Timeline, visible
from simulator.query import QueryError, select
from workers.heap import glibc_malloc_trim

PAGE_SIZE = 1000
# A paged read is served from one sorted result (a snapshot, like a database cursor)
# while pages keep coming; it is computed anew once idle or old.
CACHE_IDLE_SECONDS = 10.0
CACHE_MAX_AGE_SECONDS = 60.0
CACHE_RECORDS = 400_000           # kept records in all cached results together (memory bound)
JSON = "application/json; charset=utf-8"


class Request(NamedTuple):
    method: str
    params: dict[str, str]
    root: str                     # absolute service root, for __metadata and __deferred URIs
    now: int                      # epoch ms


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def failure(status: int, code: str, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, odata.error(code, text), JSON, headers)


class NotFound(Exception):
    pass


_KEY = r"\('((?:[^']|'')*)'\)"


class Api:
    def __init__(self, options: Options, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.timeline = Timeline(options.seed, options.messages_per_minute, options.failure_ratio)
        self.history_ms = int(options.history_days * 86_400_000)
        self.served_entries = 0
        self.trim = glibc_malloc_trim() or (lambda: None)
        self.trim_due = False         # a paged read ended and no other is in progress
        self._cache: dict[tuple[str, str], tuple[float, float, list[Record]]] = {}
        self.routes: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
            (re.compile(pattern + "$"), handler) for pattern, handler in (
                (r"/?", self.service),
                (r"/MessageProcessingLogs", self.logs),
                (r"/MessageProcessingLogs/\$count", self.count),
                (r"/MessageProcessingLogs" + _KEY, self.log),
                (r"/MessageProcessingLogs" + _KEY + r"/ErrorInformation", self.error_information),
                (r"/MessageProcessingLogs" + _KEY + r"/ErrorInformation/\$value", self.error_value),
                (r"/MessageProcessingLogs" + _KEY + r"/CustomHeaderProperties", self.custom_headers),
                (r"/MessageProcessingLogs" + _KEY + r"/Attachments", self.attachments),
                (r"/MessageProcessingLogs" + _KEY + r"/MessageStoreEntries", self.store_entries),
                (r"/MessageProcessingLogs" + _KEY + r"/AdapterAttributes", self.adapter_attributes),
                (r"/MessageProcessingLogAttachments" + _KEY + r"/\$value", self.attachment_value),
                (r"/MessageStoreEntries" + _KEY, self.store_entry),
                (r"/MessageStoreEntries" + _KEY + r"/\$value", self.payload),
                (r"/IntegrationPackages", self.packages),
                (r"/IntegrationPackages" + _KEY, self.package),
                (r"/IntegrationPackages" + _KEY + r"/IntegrationDesigntimeArtifacts", self.designtime),
                (r"/IntegrationDesigntimeArtifacts\(Id=" + _KEY[2:-2] + r",Version='([^']*)'\)", self.artifact),
                (r"/IntegrationDesigntimeArtifacts\(Id=" + _KEY[2:-2] + r",Version='([^']*)'\)/\$value",
                 self.download),
                (r"/IntegrationRuntimeArtifacts", self.runtime),
                (r"/IntegrationRuntimeArtifacts" + _KEY, self.runtime_one),
            )
        ]

    def handle(self, path: str, request: Request) -> Response:
        if request.method != "GET":
            return failure(405, "Method Not Allowed", f"{request.method} is not allowed on {path}")
        if request.params.get("$format", "json").lower() != "json":
            return failure(400, "Bad Request", "The simulator answers JSON only: use $format=json")
        for pattern, handler in self.routes:
            found = pattern.match(path)
            if found:
                try:
                    return handler(request, *(group.replace("''", "'") for group in found.groups()))
                except QueryError as error:
                    return failure(400, "Bad Request", str(error))
                except NotFound as missing:
                    return failure(404, "Not Found", str(missing))
        return failure(404, "Not Found", f"Resource not found for the segment '{path.lstrip('/')}'")

    # -- message processing logs ----------------------------------------------

    def records(self, request: Request) -> list[Record]:
        filter_text, orderby = request.params.get("$filter", ""), request.params.get("$orderby", "")
        cache_key, moment = (filter_text, orderby), time.monotonic()
        created, used, records = self._cache.pop(cache_key, (0.0, 0.0, []))
        if moment - used >= CACHE_IDLE_SECONDS or moment - created >= CACHE_MAX_AGE_SECONDS:
            records = select(self.timeline, request.now, request.now - self.history_ms, filter_text, orderby)
            created = moment
        # A result idle or old enough to be computed anew is never served
        # again: drop it now rather than when the bound is reached, so a
        # backfill's windows (one result each) do not pile up in memory.
        for key in [key for key, (made, last, _) in self._cache.items()
                    if moment - last >= CACHE_IDLE_SECONDS or moment - made >= CACHE_MAX_AGE_SECONDS]:
            del self._cache[key]
        while self._cache and sum(len(entry[2]) for entry in self._cache.values()) + len(records) > CACHE_RECORDS:
            self._cache.pop(min(self._cache, key=lambda k: self._cache[k][1]))
        self._cache[cache_key] = (created, moment, records)
        return records

    def forget(self, request: Request) -> None:
        """Drop the result of a paged read that has served its last page: a read that
        comes back later gets a new snapshot, as it would after CACHE_IDLE_SECONDS.
        With no other read in progress, the freed heap is due to go back to the
        system once the last page is sent (app.Simulator calls trim_if_due)."""
        self._cache.pop((request.params.get("$filter", ""), request.params.get("$orderby", "")), None)
        self.trim_due = not self._cache

    def trim_if_due(self) -> None:
        """glibc's malloc_trim, once per paged read that ended with no other in progress:
        under a millisecond, and the simulator stays near its size at start."""
        if self.trim_due:
            self.trim_due = False
            self.trim()

    def logs(self, request: Request) -> Response:
        records = self.records(request)
        offset, size = page_window(request.params)
        page = records[offset:offset + size]
        expand = "CustomHeaderProperties" in request.params.get("$expand", "")
        selected = selection(request.params)
        root = odata.json_text(request.root)
        if selected is None:
            entries = [self._log_json(record, request.root, root, expand) for record in page]
        else:
            entries = [odata.log_json_selected(self.timeline, record, root, selected,
                                               odata.headers_json(record.message, root) if expand else None)
                       for record in page]
        self.served_entries += len(entries)
        count = len(records) if request.params.get("$inlinecount", "").lower() == "allpages" else None
        more = offset + size < len(records) and bool(page)
        if not more:
            self.forget(request)
        return Response(200, odata.collection_json(entries, count, next_link(request.params, offset + size)
                                                   if more else None))

    def _log_json(self, record: Record, root: str, escaped_root: str, expand: bool) -> str:
        headers = odata.headers_json(record.message, escaped_root) if expand else None
        return odata.log_json(self.timeline, record, escaped_root, headers)

    def count(self, request: Request) -> Response:
        return Response(200, str(len(self.records(request))).encode(), "text/plain; charset=utf-8")

    def record(self, request: Request, guid: str) -> Record:
        index = self.timeline.index_of(guid)
        record = None
        if index is not None:
            message = self.timeline.message(index)
            if message.start >= request.now - self.history_ms:
                record = visible(message, request.now)
        if record is None:
            raise NotFound(f"Message processing log '{guid}' does not exist")
        return record

    def log(self, request: Request, guid: str) -> Response:
        entry = odata.log_json(self.timeline, self.record(request, guid), odata.json_text(request.root))
        return Response(200, f'{{"d":{entry}}}'.encode())

    def error_information(self, request: Request, guid: str) -> Response:
        record = self.record(request, guid)
        if not odata.has_error(record):
            raise NotFound(f"Message processing log '{guid}' has no error information")
        path = f"MessageProcessingLogErrorInformations{odata.key(guid)}"
        return Response(200, odata.single({
            "__metadata": odata.metadata(request.root, path, "MessageProcessingLogErrorInformation"),
            "MessageGuid": guid, "Type": "text/plain", "LastErrorModelStepId": "CallActivity_1"}))

    def error_value(self, request: Request, guid: str) -> Response:
        record = self.record(request, guid)
        if not odata.has_error(record):
            raise NotFound(f"Message processing log '{guid}' has no error information")
        return Response(200, odata.error_text(record).encode(), "text/plain; charset=utf-8")

    def custom_headers(self, request: Request, guid: str) -> Response:
        return Response(200, odata.collection(header_entries(self.record(request, guid), request.root)))

    def attachments(self, request: Request, guid: str) -> Response:
        return Response(200, odata.collection(content.attachments(self.record(request, guid), request.root)))

    def store_entries(self, request: Request, guid: str) -> Response:
        return Response(200, odata.collection(content.store_entries(self.record(request, guid), request.root)))

    def adapter_attributes(self, request: Request, guid: str) -> Response:
        found = content.adapter_attributes(self.record(request, guid), request.root)
        return Response(200, odata.collection(found))

    def _owner(self, request: Request, item_id: str, prefix: str) -> Record:
        parts = item_id.split(":")
        if len(parts) != 4 or not item_id.startswith(prefix):
            raise NotFound(f"'{item_id}' does not exist")
        return self.record(request, parts[2])

    def attachment_value(self, request: Request, att_id: str) -> Response:
        record = self._owner(request, att_id, "sap-it-res:att:")
        if att_id not in content.attachment_ids(record):
            raise NotFound(f"Attachment '{att_id}' does not exist")
        return Response(200, content.attachment_text(record), "text/plain; charset=utf-8")

    def store_entry(self, request: Request, entry_id: str) -> Response:
        record = self._owner(request, entry_id, "sap-it-res:msg:")
        found = [e for e in content.store_entries(record, request.root) if e["Id"] == entry_id]
        if not found:
            raise NotFound(f"Message store entry '{entry_id}' does not exist")
        return Response(200, odata.single(found[0]))

    def payload(self, request: Request, entry_id: str) -> Response:
        record = self._owner(request, entry_id, "sap-it-res:msg:")
        if entry_id not in content.store_entry_ids(record):
            raise NotFound(f"Message store entry '{entry_id}' does not exist")
        return Response(200, content.payload(record), "application/octet-stream")

    # -- integration content ----------------------------------------------------

    def service(self, request: Request) -> Response:
        sets = ["MessageProcessingLogs", "MessageStoreEntries", "IntegrationPackages",
                "IntegrationDesigntimeArtifacts", "IntegrationRuntimeArtifacts"]
        return Response(200, odata.dumps({"d": {"EntitySets": sets}}))

    def packages(self, request: Request) -> Response:
        return Response(200, odata.collection(content.packages(request.root)))

    def package(self, request: Request, package_id: str) -> Response:
        ids = [p["Id"] for p in content.packages(request.root)]
        if package_id not in ids:
            raise NotFound(f"Integration package '{package_id}' does not exist")
        return Response(200, odata.single(content.package_entry(ids.index(package_id), request.root)))

    def designtime(self, request: Request, package_id: str) -> Response:
        if package_id not in PACKAGE_INDEX:
            raise NotFound(f"Integration package '{package_id}' does not exist")
        found = [content.designtime_entry(f, request.root) for f in content.package_flows(package_id)]
        return Response(200, odata.collection(found))

    def _flow(self, artifact_id: str, version: str):
        if artifact_id not in FLOW_INDEX:
            raise NotFound(f"Integration design time artifact '{artifact_id}' does not exist")
        flow = FLOWS[FLOW_INDEX[artifact_id]]
        if version not in ("active", f"1.0.{FLOW_INDEX[artifact_id]}"):
            raise NotFound(f"Integration design time artifact '{artifact_id}' has no version '{version}'")
        return flow

    def artifact(self, request: Request, artifact_id: str, version: str) -> Response:
        return Response(200, odata.single(content.designtime_entry(self._flow(artifact_id, version), request.root)))

    def download(self, request: Request, artifact_id: str, version: str) -> Response:
        flow = self._flow(artifact_id, version)
        if PACKAGE_INDEX[flow.package_id].mode == "READ_ONLY":
            return failure(400, "Bad Request", f"Artifact '{artifact_id}' belongs to a read-only package "
                                               "and cannot be downloaded")
        disposition = ("content-disposition", f'attachment; filename="{flow.id}.zip"')
        return Response(200, content.artifact_zip(flow.id), "application/zip", (disposition,))

    def runtime(self, request: Request) -> Response:
        return Response(200, odata.collection([content.runtime_entry(f, request.root) for f in FLOWS]))

    def runtime_one(self, request: Request, artifact_id: str) -> Response:
        if artifact_id not in FLOW_INDEX:
            raise NotFound(f"Integration runtime artifact '{artifact_id}' does not exist")
        return Response(200, odata.single(content.runtime_entry(FLOWS[FLOW_INDEX[artifact_id]], request.root)))


def header_entries(record: Record, root: str) -> list[dict[str, Any]]:
    guid = record.message.guid
    return [{"__metadata": odata.metadata(root, "CustomHeaderProperties" + odata.key(f"{guid}-{n}"),
                                          "CustomHeaderProperty"),
             "Id": f"{guid}-{n}", "Name": name, "Value": value}
            for n, (name, value) in enumerate(odata.custom_headers(record.message))]


def selection(params: dict[str, str]) -> tuple[str, ...] | None:
    """The properties ``$select`` names, in order (None: all of them); QueryError names one that is unknown."""
    raw = params.get("$select", "").strip()
    if not raw or raw == "*":
        return None
    names = tuple(name.strip() for name in raw.split(","))
    for name in names:
        if name not in odata.LOG_PROPERTIES:
            raise QueryError(f"Invalid $select {raw!r}: {name!r} is not a property of MessageProcessingLog")
    return tuple(dict.fromkeys(names))


def _whole(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise QueryError(f"Invalid {name} {raw!r}: expected a whole number")
    return int(raw)


def page_window(params: dict[str, str]) -> tuple[int, int]:
    """(offset, size): ``$skiptoken`` continues a paged read, ``$skip`` starts one;
    ``$top`` sets the page size, at most PAGE_SIZE."""
    offset = _whole(params, "$skiptoken", -1)
    if offset < 0:
        offset = _whole(params, "$skip", 0)
    return offset, min(_whole(params, "$top", PAGE_SIZE), PAGE_SIZE)


def next_link(params: dict[str, str], offset: int) -> str:
    """A RELATIVE link, as real tenants send it, repeating the query's own options."""
    kept = [(k, v) for k, v in params.items() if k not in ("$skip", "$skiptoken")]
    query = "&".join(f"{quote(k, safe='$')}={quote(v, safe=chr(39) + ':(),')}" for k, v in kept)
    return f"MessageProcessingLogs?$skiptoken={offset}" + (f"&{query}" if query else "")
