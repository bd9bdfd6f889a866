"""JSON access log: one orjson line per request, buffered and flushed on a short timer.

The logging module costs more than the rest of a proxied request, so access lines bypass it:
they are serialised with orjson into a buffer that is written out every `flush_interval_s`
(or when it grows past `max_buffer`), one write per batch instead of one per request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO, Any

import orjson


class AccessLog:
    def __init__(self, stream: IO[bytes] | None = None, flush_interval_s: float = 0.2,
                 max_buffer: int = 256 * 1024) -> None:
        self.stream = stream if stream is not None else sys.stderr.buffer
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._task: asyncio.Task[None] | None = None

    def write(self, fields: dict[str, Any]) -> None:
        fields["ts"] = time.time()
        self._buf += orjson.dumps(fields)
        self._buf += b"\n"
        if len(self._buf) >= self.max_buffer:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.stream.write(self._buf)
            self.stream.flush()
            self._buf.clear()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()
