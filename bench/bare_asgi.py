"""The anchor of bench/bench_web.py: the least an ASGI app can do, served like Flowwatch's.

``/thread`` does the same after one round trip to the event loop's thread
pool (a no-op there), the one hand-over Flowwatch's HTTP handler makes per
request (config/http.py): what that hand-over alone costs, in the same run.
"""

import asyncio

BODY = b'{"status": "ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


def _nothing() -> None:
    return None


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/thread":
        await asyncio.get_running_loop().run_in_executor(None, _nothing)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
