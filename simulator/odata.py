"""The OData v2 JSON shapes the API answers with: entries, envelopes, errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from simulator.flows import FLOWS, PACKAGE_INDEX
from simulator.messages import Message, Record, Timeline
from simulator.query import application_message_id

NAMESPACE = "com.sap.hci.api."
LOG_NAVIGATION = ("CustomHeaderProperties", "MessageStoreEntries", "ErrorInformation", "AdapterAttributes",
                  "Attachments", "Runs")
HEADER_NAMES = ("OrderNumber", "CustomerId", "Region", "SourceSystem")
REGIONS = ("EMEA", "AMER", "APJ")


def date(ms: int) -> str:
    return f"/Date({ms})/"


def key(value: str) -> str:
    """An entity key as it appears in a URI: quoted, with ' doubled and the rest percent-encoded."""
    return "('" + quote(value.replace("'", "''"), safe="") + "')"


def metadata(root: str, path: str, kind: str) -> dict[str, str]:
    uri = f"{root}/{path}"
    return {"id": uri, "uri": uri, "type": NAMESPACE + kind}


def deferred(uri: str) -> dict[str, dict[str, str]]:
    return {"__deferred": {"uri": uri}}


def log_entry(timeline: Timeline, record: Record, root: str) -> dict[str, Any]:
    message, flow = record.message, FLOWS[record.message.flow]
    package = PACKAGE_INDEX[flow.package_id]
    path = "MessageProcessingLogs" + key(message.guid)
    entry: dict[str, Any] = {
        "__metadata": metadata(root, path, "MessageProcessingLog"),
        "MessageGuid": message.guid,
        "CorrelationId": timeline.correlation_id(message),
        "ApplicationMessageId": application_message_id(message.index),
        "ApplicationMessageType": "ORDERS05" if flow.package_id == "OrderToCash" else None,
        "PredecessorMessageGuid": None,
        "LogStart": date(message.start),
        "LogEnd": date(record.end),
        "Sender": flow.sender,
        "Receiver": flow.receiver,
        "IntegrationFlowName": flow.id,
        "Status": record.status,
        "CustomStatus": record.status,
        "LogLevel": "INFO",
        "AlternateWebLink": f"{root.rsplit('/api/v1', 1)[0]}/itspaces/shell/monitoring/MessageDetails/"
                            f"%7B%22messageGuid%22:%22{message.guid}%22%7D",
        "ArchivingStatus": "NOT_RELEVANT",
        "TransactionId": message.digest[:16].hex(),
        "PreviousComponentName": "CPI_SIM",
        "LocalComponentName": "CPI_SIM",
        "OriginComponentName": "CPI_SIM",
        "IntegrationArtifact": {
            "__metadata": {"type": NAMESPACE + "IntegrationArtifact"},
            "Id": flow.id, "Name": flow.name, "Type": "INTEGRATION_FLOW",
            "PackageId": package.id, "PackageName": package.name,
        },
    }
    for name in LOG_NAVIGATION:
        entry[name] = deferred(f"{root}/{path}/{name}")
    return entry


def custom_headers(message: Message) -> list[tuple[str, str]]:
    """(Name, Value) pairs: none to four per message."""
    count = message.digest[25] % 5
    values = {
        "OrderNumber": application_message_id(message.index),
        "CustomerId": f"C{1000 + message.digest[26] % 50}",
        "Region": REGIONS[message.digest[27] % 3],
        "SourceSystem": FLOWS[message.flow].sender,
    }
    return [(name, values[name]) for name in HEADER_NAMES[:count]]


def has_error(record: Record) -> bool:
    """FAILED and ESCALATED messages keep an error; so does one that was retried."""
    return record.status in ("FAILED", "ESCALATED", "RETRY") or bool(record.message.retry_end)


def error_text(record: Record) -> str:
    message, flow = record.message, FLOWS[record.message.flow]
    template = flow.errors[message.digest[24] % len(flow.errors)]
    return template.format(guid=message.guid, receiver=flow.receiver)


def collection(results: list[dict], count: int | None = None, next_link: str | None = None) -> bytes:
    body: dict[str, Any] = {"results": results}
    if count is not None:
        body["__count"] = str(count)
    if next_link:
        body["__next"] = next_link
    return dumps({"d": body})


def single(entry: dict[str, Any]) -> bytes:
    return dumps({"d": entry})


def error(code: str, text: str) -> bytes:
    return dumps({"error": {"code": code, "message": {"lang": "en", "value": text}}})


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
