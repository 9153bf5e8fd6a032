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


def _flow_fields() -> list[dict[str, str]]:
    """Per iFlow, the JSON of each of its constant fields, rendered once."""
    found = []
    for flow in FLOWS:
        package = PACKAGE_INDEX[flow.package_id]
        artifact = {"__metadata": {"type": NAMESPACE + "IntegrationArtifact"}, "Id": flow.id, "Name": flow.name,
                    "Type": "INTEGRATION_FLOW", "PackageId": package.id, "PackageName": package.name}
        found.append({"ApplicationMessageType": json.dumps("ORDERS05" if flow.package_id == "OrderToCash" else None),
                      "Sender": json.dumps(flow.sender), "Receiver": json.dumps(flow.receiver),
                      "IntegrationFlowName": json.dumps(flow.id),
                      "IntegrationArtifact": json.dumps(artifact, separators=(",", ":"))})
    return found


_FLOW_FIELDS = _flow_fields()
# Per iFlow, its constant fields as one fragment of log_json's template.
_FLOW_JSON = [",".join(f'"{name}":{value}' for name, value in fields.items()) for fields in _FLOW_FIELDS]
_LOG_TYPE = NAMESPACE + "MessageProcessingLog"
# A log entry's properties in the order log_json renders them: what $select may name.
LOG_PROPERTIES = ("MessageGuid", "CorrelationId", "ApplicationMessageId", "PredecessorMessageGuid", "LogStart",
                  "LogEnd", "ApplicationMessageType", "Sender", "Receiver", "IntegrationFlowName",
                  "IntegrationArtifact", "Status", "CustomStatus", "LogLevel", "AlternateWebLink", "ArchivingStatus",
                  "TransactionId", "PreviousComponentName", "LocalComponentName", "OriginComponentName",
                  *LOG_NAVIGATION)


def log_json(timeline: Timeline, record: Record, root: str, headers: str | None = None) -> str:
    """One MessageProcessingLogs entry as JSON text. ``root`` is already JSON-escaped (json_text);
    ``headers`` is the JSON of expanded CustomHeaderProperties, else they stay deferred.
    Rendered from a template: the page renderer is the simulator's hot path."""
    message = record.message
    guid, status = message.guid, record.status
    uri = f"{root}/MessageProcessingLogs('{guid}')"
    nav = ",".join(f'"{name}":{{"__deferred":{{"uri":"{uri}/{name}"}}}}' for name in LOG_NAVIGATION[1:])
    custom = headers if headers is not None else f'{{"__deferred":{{"uri":"{uri}/CustomHeaderProperties"}}}}'
    web = root.rsplit("/api/v1", 1)[0]
    return (f'{{"__metadata":{{"id":"{uri}","uri":"{uri}","type":"{_LOG_TYPE}"}},"MessageGuid":"{guid}",'
            f'"CorrelationId":"{timeline.correlation_id(message)}",'
            f'"ApplicationMessageId":"{application_message_id(message.index)}",'
            f'"PredecessorMessageGuid":null,"LogStart":"/Date({message.start})/","LogEnd":"/Date({record.end})/",'
            f'{_FLOW_JSON[message.flow]},"Status":"{status}","CustomStatus":"{status}","LogLevel":"INFO",'
            f'"AlternateWebLink":"{web}/itspaces/shell/monitoring/MessageDetails/'
            f'%7B%22messageGuid%22:%22{guid}%22%7D","ArchivingStatus":"NOT_RELEVANT",'
            f'"TransactionId":"{message.digest[:16].hex()}","PreviousComponentName":"CPI_SIM",'
            f'"LocalComponentName":"CPI_SIM","OriginComponentName":"CPI_SIM",'
            f'"CustomHeaderProperties":{custom},{nav}}}')


def log_json_selected(timeline: Timeline, record: Record, root: str, selected: tuple[str, ...],
                      headers: str | None = None) -> str:
    """Like log_json, with only the ``selected`` properties (``$select``), in their order, and __metadata.

    Every value is rendered as log_json renders it (tests/test_simulator.py compares
    the two property by property); log_json keeps its one template for speed."""
    message = record.message
    guid, status = message.guid, record.status
    uri = f"{root}/MessageProcessingLogs('{guid}')"
    web = root.rsplit("/api/v1", 1)[0]
    values = {
        "MessageGuid": f'"{guid}"',
        "CorrelationId": f'"{timeline.correlation_id(message)}"',
        "ApplicationMessageId": f'"{application_message_id(message.index)}"',
        "PredecessorMessageGuid": "null",
        "LogStart": f'"/Date({message.start})/"',
        "LogEnd": f'"/Date({record.end})/"',
        **_FLOW_FIELDS[message.flow],
        "Status": f'"{status}"',
        "CustomStatus": f'"{status}"',
        "LogLevel": '"INFO"',
        "AlternateWebLink": f'"{web}/itspaces/shell/monitoring/MessageDetails/%7B%22messageGuid%22:%22{guid}%22%7D"',
        "ArchivingStatus": '"NOT_RELEVANT"',
        "TransactionId": f'"{message.digest[:16].hex()}"',
        "PreviousComponentName": '"CPI_SIM"',
        "LocalComponentName": '"CPI_SIM"',
        "OriginComponentName": '"CPI_SIM"',
        **{name: f'{{"__deferred":{{"uri":"{uri}/{name}"}}}}' for name in LOG_NAVIGATION},
    }
    if headers is not None:
        values["CustomHeaderProperties"] = headers
    members = "".join(f',"{name}":{values[name]}' for name in selected)
    return f'{{"__metadata":{{"id":"{uri}","uri":"{uri}","type":"{_LOG_TYPE}"}}{members}}}'


def json_text(value: str) -> str:
    """``value`` escaped for use inside a JSON string literal."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


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


def headers_json(message: Message, root: str) -> str:
    """The expanded CustomHeaderProperties of a log entry as JSON text, ``root`` JSON-escaped (json_text).
    Rendered from a template like log_json: with $expand it is on the page renderer's path."""
    guid, kind = message.guid, NAMESPACE + "CustomHeaderProperty"
    parts = []
    for n, (name, value) in enumerate(custom_headers(message)):
        uri = f"{root}/CustomHeaderProperties{key(f'{guid}-{n}')}"
        parts.append(f'{{"__metadata":{{"id":"{uri}","uri":"{uri}","type":"{kind}"}},"Id":"{guid}-{n}",'
                     f'"Name":"{name}","Value":{json.dumps(value, ensure_ascii=False)}}}')
    return f'{{"results":[{",".join(parts)}]}}'


def has_error(record: Record) -> bool:
    """FAILED and ESCALATED messages keep an error; so does one that was retried."""
    return record.status in ("FAILED", "ESCALATED", "RETRY") or bool(record.message.retry_end)


def error_text(record: Record) -> str:
    message, flow = record.message, FLOWS[record.message.flow]
    template = flow.errors[message.digest[24] % len(flow.errors)]
    return template.format(guid=message.guid, receiver=flow.receiver)


def collection_json(entries: list[str], count: int | None = None, next_link: str | None = None) -> bytes:
    """A collection from entries already rendered as JSON text."""
    tail = (f',"__count":"{count}"' if count is not None else "") + (
        f',"__next":{json.dumps(next_link)}' if next_link else "")
    return f'{{"d":{{"results":[{",".join(entries)}]{tail}}}}}'.encode()


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
