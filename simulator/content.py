"""Sub-resources of a message and the tenant's integration content."""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from typing import Any

from simulator.flows import FLOW_INDEX, FLOWS, PACKAGES, Flow
from simulator.messages import Record
from simulator.odata import deferred, error_text, has_error, key, metadata
from simulator.query import application_message_id

CREATED_MS = 1_700_000_000_000
DAY_MS = 86_400_000


# -- message store entries, attachments, adapter attributes ---------------------

def store_entry_ids(record: Record) -> list[str]:
    """Messages with an error, and every third other one, persisted their payload."""
    message = record.message
    if not (has_error(record) or message.digest[28] % 3 == 0):
        return []
    return [f"sap-it-res:msg:{message.guid}:{message.digest[28:32].hex()}"]


def store_entries(record: Record, root: str) -> list[dict[str, Any]]:
    entries = []
    for entry_id in store_entry_ids(record):
        path = "MessageStoreEntries" + key(entry_id)
        entries.append({
            "__metadata": metadata(root, path, "MessageStoreEntry"),
            "Id": entry_id, "MessageGuid": record.message.guid, "MessageStoreId": "PersistPayload",
            "TimeStamp": f"/Date({record.message.first_end})/", "HasAttachments": False,
            "Attachments": deferred(f"{root}/{path}/Attachments"),
            "Properties": deferred(f"{root}/{path}/Properties"),
        })
    return entries


def payload(record: Record) -> bytes:
    message, flow = record.message, FLOWS[record.message.flow]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Message flow="{flow.id}" guid="{message.guid}">'
            f"<OrderNumber>{application_message_id(message.index)}</OrderNumber>"
            f"<Sender>{flow.sender}</Sender><Receiver>{flow.receiver}</Receiver></Message>\n").encode()


def attachment_ids(record: Record) -> list[str]:
    return [f"sap-it-res:att:{record.message.guid}:1"] if has_error(record) else []


def attachment_text(record: Record) -> bytes:
    return f"Error details for {record.message.guid}\n{error_text(record)}\n".encode()


def attachments(record: Record, root: str) -> list[dict[str, Any]]:
    return [{
        "__metadata": metadata(root, "MessageProcessingLogAttachments" + key(att_id),
                               "MessageProcessingLogAttachment"),
        "Id": att_id, "MessageGuid": record.message.guid, "TimeStamp": f"/Date({record.message.first_end})/",
        "Name": "ErrorDetails", "ContentType": "text/plain", "PayloadSize": str(len(attachment_text(record))),
    } for att_id in attachment_ids(record)]


def adapter_attributes(record: Record, root: str) -> list[dict[str, Any]]:
    message, flow = record.message, FLOWS[record.message.flow]
    code = "503" if record.status in ("FAILED", "ESCALATED") else "200"
    rows = (("HTTP", "Receiver", flow.receiver), ("HTTP", "Response Code", code))
    return [{
        "__metadata": metadata(root, "MessageProcessingAdapterAttributes" + key(f"{message.guid}-{n}"),
                               "MessageProcessingAdapterAttribute"),
        "Id": f"{message.guid}-{n}", "AdapterId": adapter, "AdapterMessageId": message.digest[4:12].hex(),
        "Name": name, "Value": value,
    } for n, (adapter, name, value) in enumerate(rows)]


# -- integration content --------------------------------------------------------

def packages(root: str) -> list[dict[str, Any]]:
    return [package_entry(n, root) for n in range(len(PACKAGES))]


def package_entry(n: int, root: str) -> dict[str, Any]:
    package = PACKAGES[n]
    path = "IntegrationPackages" + key(package.id)
    return {
        "__metadata": metadata(root, path, "IntegrationPackage"),
        "Id": package.id, "Name": package.name,
        "Description": f"<p>{package.name}: demo content of the Flowwatch tenant simulator.</p>",
        "ShortText": package.name, "Version": f"1.0.{n}", "Vendor": package.vendor,
        "PartnerContent": False, "UpdateAvailable": False, "Mode": package.mode,
        "SupportedPlatform": "SAP Cloud Integration", "CreatedBy": "simulator", "ModifiedBy": "simulator",
        "CreationDate": str(CREATED_MS + n * DAY_MS), "ModifiedDate": str(CREATED_MS + (n + 7) * DAY_MS),
        "Products": "[SAP S/4HANA, SAP Ariba]", "Keywords": "[demo, flowwatch]", "Countries": "[]",
        "Industries": "[]", "LineOfBusiness": "[]",
        "IntegrationDesigntimeArtifacts": deferred(f"{root}/{path}/IntegrationDesigntimeArtifacts"),
    }


def package_flows(package_id: str) -> list[Flow]:
    return [flow for flow in FLOWS if flow.package_id == package_id]


def designtime_entry(flow: Flow, root: str) -> dict[str, Any]:
    n = FLOW_INDEX[flow.id]
    path = f"IntegrationDesigntimeArtifacts(Id='{flow.id}',Version='active')"
    return {
        "__metadata": {**metadata(root, path, "IntegrationDesigntimeArtifact"),
                       "media_src": f"{root}/{path}/$value", "content_type": "application/octet-stream"},
        "Id": flow.id, "Version": f"1.0.{n}", "PackageId": flow.package_id, "Name": flow.name,
        "Description": f"{flow.sender} to {flow.receiver}", "ArtifactContent": None,
        "CreatedBy": "simulator", "CreatedAt": str(CREATED_MS + n * DAY_MS),
        "ModifiedBy": "simulator", "ModifiedAt": str(CREATED_MS + (n + 3) * DAY_MS),
        "Configurations": deferred(f"{root}/{path}/Configurations"),
        "Resources": deferred(f"{root}/{path}/Resources"),
    }


def runtime_entry(flow: Flow, root: str) -> dict[str, Any]:
    n = FLOW_INDEX[flow.id]
    path = "IntegrationRuntimeArtifacts" + key(flow.id)
    return {
        "__metadata": metadata(root, path, "IntegrationRuntimeArtifact"),
        "Id": flow.id, "Version": f"1.0.{n}", "Name": flow.name, "Type": "INTEGRATION_FLOW",
        "DeployedBy": "simulator", "DeployedOn": f"/Date({CREATED_MS + (n + 4) * DAY_MS})/",
        # One artifact is deployed in error, as real tenants tend to have.
        "Status": "ERROR" if flow.id == "Payment_Advice" else "STARTED",
        "ErrorInformation": deferred(f"{root}/{path}/ErrorInformation"),
    }


@lru_cache(maxsize=64)
def artifact_zip(flow_id: str) -> bytes:
    """A small, valid, byte-for-byte reproducible iFlow bundle."""
    flow = FLOWS[FLOW_INDEX[flow_id]]
    files = {
        "META-INF/MANIFEST.MF": f"Manifest-Version: 1.0\nBundle-SymbolicName: {flow.id}\n"
                                f"Bundle-Name: {flow.name}\nBundle-Version: 1.0.{FLOW_INDEX[flow.id]}\n",
        "metainfo.prop": f"description={flow.sender} to {flow.receiver}\n",
        f"src/main/resources/scenarioflows/integrationflow/{flow.id}.iflw":
            f'<?xml version="1.0" encoding="UTF-8"?>\n<bpmn2:definitions id="{flow.id}" '
            f'xmlns:bpmn2="http://www.omg.org/spec/BPMN/20100524/MODEL"/>\n',
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, text in files.items():
            bundle.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()
