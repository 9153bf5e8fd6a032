"""The fixed integration content of the simulated tenant: packages and iFlows."""

from __future__ import annotations

from typing import NamedTuple


class Package(NamedTuple):
    id: str
    name: str
    mode: str          # EDIT_ALLOWED or READ_ONLY (a READ_ONLY package's artifacts refuse download)
    vendor: str


class Flow(NamedTuple):
    id: str
    name: str
    package_id: str
    sender: str
    receiver: str
    weight: int        # share of the traffic
    bursty: bool       # fails in bursts, so that alert rules find something
    errors: tuple[str, ...]


PACKAGES: tuple[Package, ...] = (
    Package("OrderToCash", "Order to Cash", "EDIT_ALLOWED", "Flowwatch Demo"),
    Package("ProcureToPay", "Procure to Pay", "EDIT_ALLOWED", "Flowwatch Demo"),
    Package("MasterData", "Master Data Replication", "EDIT_ALLOWED", "Flowwatch Demo"),
    Package("SAPStandardContent", "SAP Standard Content", "READ_ONLY", "SAP"),
)

_HTTP_503 = ("com.sap.it.rt.adapter.http.api.exception.HttpResponseException: An internal server error "
             "occured: HTTP 503 Service Unavailable. The MPL ID for the failed message is : {guid}")
_TIMEOUT = "java.net.SocketTimeoutException: Read timed out (after 60000 ms) calling {receiver}"
_MAPPING = ("com.sap.xi.mapping.camel.XiMappingException: Mapping failed: Cannot produce target element "
            "/ns0:Order/Item/Quantity. Check whether the source message contains the element.")
_AUTH = ("com.sap.it.rt.adapter.http.api.exception.HttpResponseException: HTTP 401 Unauthorized from "
         "{receiver}: the credential 'ERP_TECH_USER' was refused")
_SFTP = "com.jcraft.jsch.JSchException: Auth fail for sftp://files.partner.example:22/inbound"
_IDOC = "IDoc adapter: receiver {receiver} answered status 51 (application document not posted)"

FLOWS: tuple[Flow, ...] = (
    Flow("SalesOrder_Replicate", "Replicate Sales Orders", "OrderToCash", "WebShop", "S4HANA", 20, False,
         (_HTTP_503, _MAPPING)),
    Flow("Invoice_Send", "Send Invoices", "OrderToCash", "S4HANA", "Ariba", 12, True, (_TIMEOUT, _HTTP_503)),
    Flow("Delivery_Notify", "Notify Deliveries", "OrderToCash", "S4HANA", "Carrier", 8, False, (_TIMEOUT,)),
    Flow("PurchaseOrder_Create", "Create Purchase Orders", "ProcureToPay", "Ariba", "S4HANA", 10, False,
         (_MAPPING, _IDOC)),
    Flow("Supplier_Invoice_Post", "Post Supplier Invoices", "ProcureToPay", "SFTP_Partner", "S4HANA", 6, True,
         (_SFTP, _IDOC)),
    Flow("Payment_Advice", "Payment Advice", "ProcureToPay", "Bank", "S4HANA", 4, False, (_AUTH,)),
    Flow("Material_Replicate", "Replicate Materials", "MasterData", "S4HANA", "MDG", 15, False, (_HTTP_503,)),
    Flow("BusinessPartner_Sync", "Sync Business Partners", "MasterData", "SuccessFactors", "S4HANA", 15, False,
         (_MAPPING, _AUTH)),
    Flow("SAP_ERP_Connector", "SAP ERP Connector", "SAPStandardContent", "S4HANA", "SAC", 10, False,
         (_TIMEOUT,)),
)

FLOW_INDEX = {flow.id: n for n, flow in enumerate(FLOWS)}
PACKAGE_INDEX = {package.id: package for package in PACKAGES}


def _cumulative() -> tuple[int, ...]:
    total, bounds = 0, []
    for flow in FLOWS:
        total += flow.weight
        bounds.append(total)
    return tuple(bounds)


CUMULATIVE_WEIGHTS = _cumulative()
TOTAL_WEIGHT = CUMULATIVE_WEIGHTS[-1]
