"""1000 metrics websockets on one web process at once, every one fed, then a mass disconnect.

The web process is one member of the metrics group however many sockets it
holds (apps/dashboard/hub.py): the group grows by at most one while they are
open and is back to its size before once they closed.
"""

from __future__ import annotations

import asyncio
import json
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.faults.conftest import GROUP_KEY, INTERVAL, report, wait_until

SOCKETS = 1000


async def open_one(url: str, headers: dict[str, str]):
    return await connect(url, additional_headers=headers, open_timeout=120, max_size=2**24)


async def first_frame(socket) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), 120))


async def next_snapshot_after(socket, collected_at: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 4 * INTERVAL + 60))
        if frame["type"] == "snapshot" and frame["snapshot"]["collected_at"] > collected_at:
            return frame


async def burst(stack, session: str) -> dict:
    url = f"ws://127.0.0.1:{stack.web_port}/ws/superadmin/metrics/"
    headers = {"Cookie": f"sessionid={session}", "Origin": stack.url("")}
    started = time.monotonic()
    opened = await asyncio.gather(*(open_one(url, headers) for _ in range(SOCKETS)), return_exceptions=True)
    sockets = [s for s in opened if not isinstance(s, BaseException)]
    refused = [repr(s) for s in opened if isinstance(s, BaseException)]
    firsts = await asyncio.gather(*(first_frame(s) for s in sockets), return_exceptions=True)
    open_seconds = time.monotonic() - started
    closed = sum(isinstance(f, ConnectionClosed) for f in firsts)
    close_codes = sorted({f.rcvd.code if f.rcvd else 1006 for f in firsts if isinstance(f, ConnectionClosed)})
    latest = max(f["snapshot"]["collected_at"] for f in firsts if isinstance(f, dict) and f["type"] == "snapshot")
    members = stack.broker(db=3).zcard(GROUP_KEY)
    fed = await asyncio.gather(*(next_snapshot_after(s, latest) for s in sockets), return_exceptions=True)
    frames = [f for f in fed if isinstance(f, dict)]
    deflate = sum(1 for s in sockets if "permessage-deflate" in (s.response.headers.get("Sec-WebSocket-Extensions")
                                                                   or ""))
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return {"opened": len(sockets), "refused": refused[:3], "refused_count": len(refused), "closed_early": closed, "close_codes": close_codes,
            "members_while_open": members, "fed": len(frames),
            "one_collected_at": len({f["snapshot"]["collected_at"] for f in frames}) == 1,
            "deflate": deflate, "open_seconds": round(open_seconds, 1)}


def test_a_thousand_websockets_at_once_all_get_every_snapshot_from_one_group_member(stack):
    session = stack.session_key()
    before = stack.broker(db=3).zcard(GROUP_KEY)
    found = asyncio.run(burst(stack, session))
    closed_at = time.monotonic()
    report("1000 websockets open", **found)
    left = wait_until(lambda: (n := stack.broker(db=3).zcard(GROUP_KEY)) <= before and str(n), timeout=120,
                      what="the group back to its size before the burst")
    report("1000 websockets", **found, members_before=before, members_after_close=left,
           group_shrank_s=f"{time.monotonic() - closed_at:.1f}")
    assert found["refused_count"] == 0 and found["closed_early"] == 0, found
    assert found["opened"] == SOCKETS
    assert 1 <= found["members_while_open"] <= before + 1  # the web process's hub, not one per socket
    assert found["fed"] == SOCKETS  # every socket got the next snapshot
    assert found["deflate"] == SOCKETS  # offered by the client, accepted by uvicorn
