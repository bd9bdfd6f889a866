"""The router's keep-alive HTTP/1.1 client for engine pods, against small real TCP servers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from router.upstream import UpstreamConnectionError, UpstreamPool

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # returns False to close the connection


@dataclass
class Backend:
    address: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


@asynccontextmanager
async def backend(reply: Reply) -> AsyncIterator[Backend]:
    state = Backend(address="")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                body = await _read_request(reader)
                if body is None:
                    break
                state.requests.append(body)
                if not await reply(body, writer):
                    break
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.address = f"127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.close()


def _json(body: bytes, extra_headers: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra_headers}\r\n").encode() + body


async def test_a_fully_read_response_leaves_its_connection_for_the_next_request() -> None:
    async def reply(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_json(b'{"ok":true}'))
        return True

    pool = UpstreamPool()
    async with backend(reply) as b:
        for _ in range(3):
            resp = await pool.request(b.address, "POST", "/v1/completions", b"{}")
            assert await resp.read() == b'{"ok":true}'
        pool.close()
    assert b.connections == 1


async def test_a_response_head_that_does_not_come_in_time_raises_timeout_and_drops_the_connection() -> None:
    async def silent(body: bytes, w: asyncio.StreamWriter) -> bool:
        return True  # never answers

    pool = UpstreamPool()
    async with backend(silent) as b:
        with pytest.raises(TimeoutError):
            await pool.request(b.address, "POST", "/v1/completions", b"{}", head_timeout_s=0.2)
        with pytest.raises(TimeoutError):
            await pool.request(b.address, "POST", "/v1/completions", b"{}", head_timeout_s=0.2)
        pool.close()
    assert b.connections == 2  # the timed-out connection was not reused


async def test_a_large_body_reaches_the_engine_intact() -> None:
    async def digest(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_json(hashlib.sha256(body).hexdigest().encode()))
        return True

    body = bytes(range(256)) * 4096  # 1 MiB: sent without being joined to the request head
    pool = UpstreamPool()
    async with backend(digest) as b:
        resp = await pool.request(b.address, "POST", "/v1/completions", body)
        assert await resp.read() == hashlib.sha256(body).hexdigest().encode()
        pool.close()


async def test_a_pooled_connection_the_engine_closed_is_retried_on_a_fresh_one() -> None:
    async def once(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(_json(b"ok"))
        return False  # closes after each response without saying so

    pool = UpstreamPool()
    async with backend(once) as b:
        first = await pool.request(b.address, "POST", "/x", b"1")
        assert await first.read() == b"ok"
        # Depending on timing the pooled connection is seen closed before or after the write.
        second = await pool.request(b.address, "POST", "/x", b"2")
        assert await second.read() == b"ok"
        pool.close()
    assert b.requests == [b"1", b"2"]


async def test_a_body_cut_short_raises_a_connection_error() -> None:
    async def short(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        return False

    pool = UpstreamPool()
    async with backend(short) as b:
        resp = await pool.request(b.address, "POST", "/x", b"{}")
        with pytest.raises(UpstreamConnectionError):
            await resp.read()
        pool.close()


async def test_a_body_arriving_in_pieces_is_read_whole() -> None:
    rest = asyncio.Event()

    async def in_two(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        await w.drain()
        await rest.wait()
        w.write(b"56789")
        return True

    pool = UpstreamPool()
    async with backend(in_two) as b:
        resp = await pool.request(b.address, "POST", "/x", b"{}")
        reading = asyncio.ensure_future(resp.read())
        done, _ = await asyncio.wait({reading}, timeout=0.1)
        assert not done  # half a body is not a body
        rest.set()
        assert await reading == b"0123456789"
        pool.close()


async def test_a_chunked_stream_is_passed_through_chunk_by_chunk() -> None:
    async def chunked(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
            w.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        w.write(b"0\r\n\r\n")
        return True

    pool = UpstreamPool()
    async with backend(chunked) as b:
        resp = await pool.request(b.address, "POST", "/x", b"{}")
        chunks = [c async for c in resp.iter_chunks()]
        assert b"".join(chunks) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
        again = await pool.request(b.address, "POST", "/x", b"{}")  # read to the end: reused
        assert [c async for c in again.iter_chunks()]
        pool.close()
    assert b.connections == 1


async def test_chunks_that_arrived_together_go_on_as_one_piece() -> None:
    events = [b"data: %d\n\n" % i for i in range(5)]
    wire = b"".join(f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events) + b"0\r\n\r\n"

    async def burst(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)  # one write, one arrival
        return True

    pool = UpstreamPool()
    async with backend(burst) as b:
        resp = await pool.request(b.address, "POST", "/x", b"{}")
        pieces = [c async for c in resp.iter_chunks()]
        pool.close()
    assert pieces == [b"".join(events)]
