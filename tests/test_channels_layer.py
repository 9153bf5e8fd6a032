"""The channels layer's pool waits for a connection; members that never left expire."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer
from redis.exceptions import MaxConnectionsError

from config import redis_layout
from config.redis_layout import channel_layers, resolve
from tests.test_metrics_support import private_server
from workers.channels_layer import FlowwatchChannelLayer


def layer_config(url: str) -> dict:
    (layer,) = channel_layers(resolve({"CHANNELS_REDIS_URL": url})).values()
    return layer


async def join_at_once(layer: RedisChannelLayer, sockets: int) -> list[str]:
    channels = [await layer.new_channel() for _ in range(sockets)]
    await asyncio.gather(*(layer.group_add("burst", channel) for channel in channels))
    return channels


def test_the_settings_name_the_waiting_layer_and_a_stated_group_expiry():
    config = layer_config("redis://127.0.0.1:6379/3")
    assert config["BACKEND"] == "workers.channels_layer.FlowwatchChannelLayer"
    assert config["CONFIG"]["group_expiry"] == redis_layout.CHANNELS_GROUP_EXPIRY == 3600
    assert redis_layout.CHANNELS_GROUP_REFRESH < redis_layout.CHANNELS_GROUP_EXPIRY


def test_a_burst_of_joins_beyond_the_pool_waits_instead_of_failing():
    with private_server() as server:
        host = layer_config(server.url(3))["CONFIG"]["hosts"]
        layer = FlowwatchChannelLayer(hosts=host, pool_size=4)

        async def burst() -> int:
            await join_at_once(layer, 400)
            members = await layer.connection(0).zcard(layer._group_key("burst"))
            await layer.flush()
            return members

        assert asyncio.run(burst()) == 400
        assert server.client(0).info("clients")["connected_clients"] <= 1 + 4


def test_the_plain_pool_refuses_the_same_burst():
    """What the waiting pool is for: redis-py's pool raises at its limit."""
    with private_server() as server:
        hosts = [{**layer_config(server.url(3))["CONFIG"]["hosts"][0], "max_connections": 4}]
        layer = RedisChannelLayer(hosts=hosts)

        async def burst() -> None:
            try:
                await join_at_once(layer, 400)
            finally:
                await layer.flush()

        with pytest.raises(MaxConnectionsError):
            asyncio.run(burst())


def test_a_host_without_an_address_is_refused_with_a_clear_error():
    layer = FlowwatchChannelLayer(hosts=[{"host": "127.0.0.1", "port": 6379}])
    with pytest.raises(ValueError, match="needs an 'address'"):
        layer.create_pool(0)
