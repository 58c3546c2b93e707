# A WebSocket client from another ecosystem (Python `websockets`), as NZB Flow's docs show:
# connect to URL, print READY, then print N received text messages, one per line.
import asyncio
import sys

import websockets


async def main(url: str, count: int) -> None:
    async with websockets.connect(url, open_timeout=10) as ws:
        print("READY", flush=True)
        for _ in range(count):
            message = await asyncio.wait_for(ws.recv(), 20)
            print(message, flush=True)


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
