"""The plain redis-py clients (workers/redis_clients.client_for) verify rediss:// servers.

They serve the controller's readers, /readyz, locks and occupancy; the
Celery, cache and channels clients are covered by tests/test_tls.py.
"""

from __future__ import annotations

import pytest
import redis

from config.redis_layout import ROLE_VARIABLES, ROLES, Layout, resolve
from tests.servers import RedisServer
from tests.support.certs import certs, tls_server  # noqa: F401  (fixtures)
from workers.collect import Collector
from workers.redis_clients import client_for

pytestmark = pytest.mark.tls





def tls_layout(server: RedisServer, **extra: str) -> Layout:
    env = {"REDIS_LOCAL": "false", **{var: server.url(db) for db, var in enumerate(ROLE_VARIABLES.values())}, **extra}
    layout = resolve(env)
    assert layout.ok, layout.problems
    return layout


@pytest.mark.parametrize("role", ROLES)
def test_a_plain_client_refuses_a_server_certificate_from_an_unknown_ca(tls_server, role):
    # No REDIS_CA_CERTS: certifi's public bundle does not know the test CA.
    client = client_for(role, tls_layout(tls_server))
    try:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()
    finally:
        client.close()


@pytest.mark.parametrize("role", ROLES)
def test_a_plain_client_trusts_the_ca_it_is_given(tls_server, certs, role):
    client = client_for(role, tls_layout(tls_server, REDIS_CA_CERTS=certs["ca"]))
    try:
        assert client.ping() is True
        assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    finally:
        client.close()


def test_the_controller_reports_a_broker_with_an_unknown_ca_as_unreachable(tls_server):
    collector = Collector(tls_layout(tls_server), {}, ["ai"])
    try:
        collection = collector.collect()
    finally:
        collector.close()
    assert collection.broker is None
    (reading,) = collection.servers.values()
    assert reading.reachable is False
    assert "certificate verify failed" in reading.error
