# A WebSocket client from another ecosystem (Python `websockets`) that closes the way a
# browser's `ws.close(code, reason)` does: connect to URL, print READY, wait for a line on
# stdin, close with CODE and REASON, then print what a browser's CloseEvent would report, as
# one JSON line: the server's close code and reason, whether the close was clean (both Close
# frames exchanged, `wasClean`), and how long the close took.
import asyncio
import json
import sys
import time

import websockets
from websockets.exceptions import ConnectionClosedOK


async def main(url: str, code: int, reason: str) -> None:
    async with websockets.connect(url, open_timeout=10, close_timeout=10) as ws:
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.monotonic()
        await ws.close(code, reason)
        elapsed = time.monotonic() - started
        received = ws.protocol.close_rcvd
        print(
            json.dumps(
                {
                    "code": received.code if received else None,
                    "reason": received.reason if received else None,
                    "clean": isinstance(ws.protocol.close_exc, ConnectionClosedOK)
                    and received is not None,
                    "seconds": elapsed,
                }
            ),
            flush=True,
        )


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
