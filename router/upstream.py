"""A small keep-alive HTTP/1.1 client for engine pods, built for the proxy's hot path.

Why not aiohttp's client: per request it costs more CPU than everything else the router
does, and sends head and body in separate writes. Here a request is one write on a pooled
connection, the response head is parsed once, and the body is handed over as it arrives
(Content-Length, chunked or until-close), so SSE streams pass through chunk by chunk.
A connection whose response was not read to the end is closed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

_CRLF = b"\r\n"
_INCOMPLETE = object()  # _parse_chunk: the buffer does not hold a whole chunk yet
_JOIN_BELOW = 64 * 1024  # bytes of body sent in the same buffer as the request head


class UpstreamConnectionError(ConnectionError):
    """The pod could not be reached, or the connection broke before a full response head."""


class _Protocol(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, address: str) -> None:
        self.pool = pool
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.timed_out = False
        self.exc: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.exc = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        """The response head did not arrive in time (a loop timer calls this)."""
        self.timed_out = True
        self._wake()

    async def wait_data(self) -> None:
        """Wait for bytes beyond those already buffered (callers check the buffer first)."""
        if self.closed:
            return
        # One bare future per wait: cheaper than an asyncio.Event on the per-request path.
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    def __init__(self, proto: _Protocol, status: int, headers: dict[str, str]) -> None:
        self._proto = proto
        self.status = status
        self.headers = headers
        te = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        cl = headers.get("content-length")
        self._remaining: int | None = int(cl) if cl is not None and not self._chunked else None
        self._done = self._remaining == 0
        self._reusable = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._remaining is not None)
        self._released = False

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (de-chunked).

        Each piece is everything already received: chunks that arrived together (a router
        behind on a busy stream) go on in one piece, one write to the client instead of one
        per chunk. Nothing waits to batch, so a lone event goes on at once.
        """
        p = self._proto
        while not self._done:
            if self._chunked:
                piece = await self._next_chunks()
                if piece is None:
                    break
                yield piece
                continue
            if not p.buf:
                if p.closed:
                    if self._remaining is None:
                        self._done = True
                        break
                    raise UpstreamConnectionError("connection closed mid-body")
                await p.wait_data()
                continue
            if self._remaining is None:
                data = bytes(p.buf)
                p.buf.clear()
            else:
                data = bytes(p.buf[: self._remaining])
                del p.buf[: len(data)]
                self._remaining -= len(data)
                self._done = self._remaining == 0
            yield data
        self.release()

    async def _next_chunks(self) -> bytes | None:
        """The data of every complete chunk buffered, joined (waits while there is none).

        None, and the response is done, when the last chunk comes first.
        """
        p = self._proto
        while (piece := self._parse_chunk()) is _INCOMPLETE:
            if p.closed:
                raise UpstreamConnectionError("connection closed mid-chunk")
            await p.wait_data()
        if piece is None:
            self._done = True
            return None
        assert isinstance(piece, bytes)
        pieces: list[bytes] | None = None
        while (more := self._parse_chunk()) is not _INCOMPLETE:
            if more is None:
                self._done = True  # the body ended with what is returned now
                break
            assert isinstance(more, bytes)
            if pieces is None:
                pieces = [piece]
            pieces.append(more)
        return piece if pieces is None else b"".join(pieces)

    def _parse_chunk(self) -> bytes | object | None:
        """Take one complete chunk off the buffer: its data, None for the last chunk, or _INCOMPLETE."""
        buf = self._proto.buf
        end = buf.find(_CRLF)
        if end < 0:
            return _INCOMPLETE
        size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UpstreamConnectionError(f"bad chunk size {size_text!r}") from None
        if size == 0:
            if buf[end + 2: end + 4] == _CRLF:
                del buf[: end + 4]
                return None
            trailer_end = buf.find(b"\r\n\r\n", end)
            if trailer_end >= 0:
                del buf[: trailer_end + 4]
                return None
            return _INCOMPLETE
        if len(buf) < end + 2 + size + 2:
            return _INCOMPLETE
        data = bytes(buf[end + 2: end + 2 + size])
        del buf[: end + 2 + size + 2]
        return data

    async def read(self) -> bytes:
        """The whole body (for JSON answers; streams go through iter_chunks)."""
        remaining = self._remaining
        if remaining is not None and not self._chunked:
            p = self._proto
            while len(p.buf) < remaining:
                if p.closed:
                    raise UpstreamConnectionError("connection closed mid-body")
                await p.wait_data()
            data = bytes(p.buf[:remaining])
            del p.buf[:remaining]
            self._remaining = 0
            self._done = True
            self.release()
            return data
        parts = [piece async for piece in self.iter_chunks()]
        return b"".join(parts)

    def release(self) -> None:
        """Return the connection to the pool if the response was read to the end."""
        if self._released:
            return
        self._released = True
        if self._done and self._reusable and not self._proto.closed and not self._proto.buf:
            self._proto.pool.put(self._proto)
        else:
            self._proto.close()


class UpstreamPool:
    def __init__(self, max_idle_per_host: int = 1024, connect_timeout_s: float = 5.0) -> None:
        self.max_idle = max_idle_per_host
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[str, deque[_Protocol]] = {}

    def put(self, proto: _Protocol) -> None:
        q = self._idle.setdefault(proto.address, deque())
        if len(q) >= self.max_idle:
            proto.close()
        else:
            q.append(proto)

    async def _connect(self, address: str) -> _Protocol:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self, address), host, int(port)), self.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectionError(f"connect to {address} failed: {exc!r}") from None
        return proto

    async def request(self, address: str, method: str, path: str, body: bytes,
                      headers: dict[str, str] | None = None, head_timeout_s: float | None = None
                      ) -> UpstreamResponse:
        """Send one request; returns once the response head has arrived. A `host` header replaces
        the default Host (the address)."""
        headers = headers or {}
        head = [f"{method} {path} HTTP/1.1\r\nHost: {headers.get('host') or address}\r\n"
                f"Content-Length: {len(body)}\r\n"]
        for k, v in headers.items():
            if k != "host":
                head.append(f"{k}: {v}\r\n")
        head.append("\r\n")
        head_bytes = "".join(head).encode("latin-1")
        # Small bodies go out in one write; a large prompt is not copied to prepend the head.
        payload: bytes | None = head_bytes + body if len(body) <= _JOIN_BELOW else None
        q = self._idle.get(address)
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            reused = bool(q)
            proto = q.pop() if q else await self._connect(address)
            if proto.closed or proto.transport is None:
                continue
            if payload is not None:
                proto.transport.write(payload)
            else:
                proto.transport.writelines((head_bytes, body))
            # A loop timer instead of asyncio.wait_for, which would create a task per request.
            timer = loop.call_later(head_timeout_s, proto.expire) if head_timeout_s is not None else None
            try:
                return await self._read_head(proto)
            except UpstreamConnectionError:
                proto.close()
                # A pooled connection the server had already closed: retry once on a fresh one.
                if not reused or attempt == 1:
                    raise
            except BaseException:
                proto.close()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        raise UpstreamConnectionError(f"no usable connection to {address}")

    async def _read_head(self, proto: _Protocol) -> UpstreamResponse:
        while True:
            end = proto.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if proto.timed_out:
                raise TimeoutError("no response head in time")
            if proto.closed:
                raise UpstreamConnectionError(f"connection closed before the response head: {proto.exc!r}")
            await proto.wait_data()
        lines = bytes(proto.buf[:end]).decode("latin-1").split("\r\n")
        del proto.buf[: end + 4]
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise UpstreamConnectionError(f"bad status line {lines[0]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            return await self._read_head(proto)
        return UpstreamResponse(proto, status, headers)

    def close(self) -> None:
        for q in self._idle.values():
            for proto in q:
                with contextlib.suppress(Exception):
                    proto.close()
        self._idle.clear()
