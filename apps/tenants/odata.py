"""OData v2 JSON values of the tenant API: dates, filter literals, typed message logs.

Plain Python (no Django), shared by the tenant client and its callers.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ODATA_DATE = re.compile(r"/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/")


def json_loads(data: bytes | str) -> Any:
    """JSON text -> Python values, decoded by orjson (several times faster than the standard library).

    What orjson refuses and the standard library reads (integers beyond 64 bits,
    NaN, lone surrogates) is read by the standard library: the same values as
    ``json.loads``, or its ValueError.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def json_dumps(value: Any) -> str:
    """Python values -> compact JSON text, by orjson; by the standard library (ASCII-escaped)
    what orjson refuses: integers beyond 64 bits, lone surrogates."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))


class TenantError(Exception):
    """A tenant call that failed. Names the tenant, the path, the HTTP status and the
    tenant's own message; never a credential or a token."""

    def __init__(self, message: str, *, tenant: str = "", path: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.tenant, self.path, self.status, self.message = tenant, path, status, message

    def __str__(self) -> str:
        where = " ".join(part for part in (
            f"tenant {self.tenant!r}:" if self.tenant else "",
            f"HTTP {self.status}" if self.status is not None else "",
            f"on {self.path}:" if self.path else "",
        ) if part)
        return f"{where} {self.message}" if where else self.message

    def __reduce__(self):
        # Keeps the keyword fields when the error crosses a process boundary (Celery, pickle).
        return (_rebuild, (type(self), self.message, self.tenant, self.path, self.status))


def _rebuild(cls: type, message: str, tenant: str, path: str, status: int | None) -> TenantError:
    return cls(message, tenant=tenant, path=path, status=status)


class TenantAuthError(TenantError):
    """The tenant (or its token endpoint) refused the credentials."""


class TenantResponseError(TenantError):
    """The tenant answered something unusable: malformed or truncated body, wrong types, an oversize page."""


def parse_odata_date(value: str) -> datetime:
    """``"/Date(1522069440200)/"`` -> an aware UTC datetime (millisecond precision)."""
    found = _ODATA_DATE.fullmatch(value) if isinstance(value, str) else None
    if not found:
        raise ValueError(f"expected an OData date like '/Date(1522069440200)/', got {value!r}")
    return EPOCH + timedelta(milliseconds=int(found.group(1)))


def datetime_literal(dt: datetime) -> str:
    """An aware datetime -> ``datetime'2021-02-01T00:00:00.000'``, in UTC with no zone, as the API wants."""
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"datetime_literal needs a timezone-aware datetime, got {dt!r}")
    utc = dt.astimezone(timezone.utc)
    return f"datetime'{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}'"


# parse_log's record key -> the entry's field; these may be null or absent.
OPTIONAL_TEXT = {
    "correlation_id": "CorrelationId",
    "application_message_id": "ApplicationMessageId",
    "application_message_type": "ApplicationMessageType",
    "predecessor_guid": "PredecessorMessageGuid",
    "sender": "Sender",
    "receiver": "Receiver",
    "custom_status": "CustomStatus",
    "log_level": "LogLevel",
    "transaction_id": "TransactionId",
    "alternate_web_link": "AlternateWebLink",
    "archiving_status": "ArchivingStatus",
}
# The fields of a log entry that Flowwatch reads (parse_log and the expanded headers);
# the rest (metadata, deferred links, component names) is neither asked for nor staged.
LOG_FIELDS = ("MessageGuid", "IntegrationFlowName", "Status", "LogStart", "LogEnd", *OPTIONAL_TEXT.values(),
              "IntegrationArtifact", "CustomHeaderProperties")
# Entries a log read asks for per page ($top; a tenant sends at most 1000): half the
# largest page, so that a reading thread holds half the objects (docs/performance.md).
LOG_PAGE_SIZE = 500


def _fail(problem: str, entry: Any, tenant: str, path: str) -> TenantResponseError:
    guid = entry.get("MessageGuid") if isinstance(entry, dict) else None
    which = f"message log {guid!r}" if isinstance(guid, str) else "a message log"
    return TenantResponseError(f"{which}: {problem}", tenant=tenant, path=path)


def _required_text(entry: dict, field: str, tenant: str, path: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value:
        raise _fail(f"{field} must be a non-empty string, got {value!r}", entry, tenant, path)
    return value


def _date(entry: dict, field: str, tenant: str, path: str) -> datetime:
    try:
        return parse_odata_date(entry.get(field))  # type: ignore[arg-type]
    except ValueError as error:
        raise _fail(f"{field}: {error}", entry, tenant, path) from None


def _artifact(entry: dict, tenant: str, path: str) -> dict[str, str | None]:
    artifact = entry.get("IntegrationArtifact") or {}
    if not isinstance(artifact, dict):
        raise _fail(f"IntegrationArtifact must be an object, got {artifact!r}", entry, tenant, path)
    found = {"iflow_id": artifact.get("Id"), "package_id": artifact.get("PackageId"),
             "package_name": artifact.get("PackageName")}
    for key, value in found.items():
        if value is not None and not isinstance(value, str):
            raise _fail(f"IntegrationArtifact {key} must be a string, got {value!r}", entry, tenant, path)
    return found


def parse_log(entry: dict, *, tenant: str = "", path: str = "") -> dict[str, Any]:
    """One MessageProcessingLogs entry -> a typed record with snake_case keys:
    guid, iflow_name, status, log_start, log_end (aware UTC datetimes), the optional
    texts of OPTIONAL_TEXT (None when absent), iflow_id, package_id, package_name.
    TenantResponseError names the field that is missing or of the wrong type."""
    if not isinstance(entry, dict):
        raise _fail(f"expected an object, got {type(entry).__name__}", entry, tenant, path)
    record: dict[str, Any] = {
        "guid": _required_text(entry, "MessageGuid", tenant, path),
        "iflow_name": _required_text(entry, "IntegrationFlowName", tenant, path),
        "status": _required_text(entry, "Status", tenant, path),
        "log_start": _date(entry, "LogStart", tenant, path),
        "log_end": _date(entry, "LogEnd", tenant, path),
    }
    for key, field in OPTIONAL_TEXT.items():
        value = entry.get(field)
        if value is not None and not isinstance(value, str):
            raise _fail(f"{field} must be a string or null, got {value!r}", entry, tenant, path)
        record[key] = value
    record.update(_artifact(entry, tenant, path))
    record["iflow_id"] = record["iflow_id"] or record["iflow_name"]
    return record
