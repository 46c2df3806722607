"""
An upstream on aiohttp: GET /events streams five Server-Sent Events, 100 ms
apart, each carrying its send time.
"""

import asyncio
import json
import time

from aiohttp import web


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for i in range(1, 6):
        await response.write(f"id: {i}\ndata: {json.dumps({'seq': i, 'sent': time.time()})}\n\n".encode())
        await asyncio.sleep(0.1)
    await response.write_eof()
    return response


async def main() -> None:
    app = web.Application()
    app.router.add_get("/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"aiohttp listening on http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
