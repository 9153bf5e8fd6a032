"""One kept tenant client per tenant and worker process.

Building a client costs a token fetch and a TLS handshake; a worker child
reuses its client (and its connection pool and token) for every task of that
tenant, until the tenant's settings change.
"""

from __future__ import annotations

from typing import Any

from apps.tenants.models import Tenant

_clients: dict[int, tuple[Any, Any]] = {}


def client_for(tenant: Tenant) -> Any:
    """The process's client of ``tenant``, rebuilt when its settings changed."""
    from apps.tenants.client import TenantClient

    config = tenant.client_config()
    kept = _clients.get(tenant.id)
    if kept is not None and kept[0] == config:
        return kept[1]
    if kept is not None:
        kept[1].close()
    client = TenantClient(config)
    _clients[tenant.id] = (config, client)
    return client


def forget(tenant_id: int) -> None:
    kept = _clients.pop(tenant_id, None)
    if kept is not None:
        kept[1].close()
