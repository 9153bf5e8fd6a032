"""4403: a refused page registers nothing (no group member) and is never sent a snapshot.

Read for longer than a controller interval while snapshots are published:
a consumer that closed but still made the process join the group, or
still sent the current snapshot, is seen here.  Real ASGI app, real channels-redis layer.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings

from apps.dashboard.metrics_api import GROUP
from config.redis_layout import CHANNELS_PREFIX
from tests.test_dashboard_snapshots import make_snapshot, publish
from tests.test_dashboard_ws import communicator, headers_for


@pytest.fixture
def ws_db(transactional_db, clean_redis):
    """Consumers read the session from another thread: rows must be committed."""
    return clean_redis


def group_members(server) -> int:
    return server.client(3).zcard(f"{CHANNELS_PREFIX}:group:{GROUP}")  # channels-redis' group key


@async_to_sync
async def frames_after_refusal(headers, server) -> tuple[dict, list[dict], int]:
    comm = communicator(headers)
    assert (await comm.connect(timeout=5))[0]
    closed = await comm.receive_output(timeout=5)
    seen: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.METRICS_CONTROLLER_INTERVAL + 1
    while loop.time() < deadline:
        await sync_to_async(publish)(make_snapshot({"ai": len(seen) + 1}))
        if not await comm.receive_nothing(timeout=0.5):
            seen.append(await comm.receive_output(timeout=5))
    members = await sync_to_async(group_members)(server)
    await comm.disconnect(timeout=5)
    return closed, seen, members


@pytest.mark.parametrize("who", ["staff", "outsider", None])
def test_a_refused_page_neither_joins_the_group_nor_gets_any_snapshot(ws_db, request, who):
    user = request.getfixturevalue(who) if who else None
    publish(make_snapshot({"ai": 7}))  # a current snapshot exists: it must not be sent either
    closed, seen, members = frames_after_refusal(headers_for(user), ws_db)
    assert closed == {"type": "websocket.close", "code": 4403}
    assert seen == []
    assert members == 0


def test_superadmin_pages_make_one_group_member_the_count_above_would_see(ws_db, superadmin):
    headers = headers_for(superadmin)

    @async_to_sync
    async def members_while_open_and_after() -> tuple[int, int, int]:
        first, second = communicator(headers), communicator(headers)
        assert (await first.connect(timeout=5))[0]
        await first.receive_output(timeout=5)  # the cached snapshot
        one = await sync_to_async(group_members)(ws_db)
        assert (await second.connect(timeout=5))[0]
        await second.receive_output(timeout=5)
        two = await sync_to_async(group_members)(ws_db)
        await first.disconnect(timeout=5)
        await second.disconnect(timeout=5)
        return one, two, await sync_to_async(group_members)(ws_db)

    publish(make_snapshot({"ai": 1}))
    # One member per process (its hub), whatever the number of pages; none once the last closed.
    assert members_while_open_and_after() == (1, 1, 0)
