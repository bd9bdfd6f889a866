"""A small real HTTPS model API for tests and demos: OpenAI chat/completions, the OpenAI
Responses API and Anthropic Messages on 127.0.0.1, with a self-signed certificate made on the spot. It answers with a
fixed text and records every request it received (path, headers, body), so tests can check
what the router sent, including the injected credentials.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from router.harness import free_port

REPLY_WORDS = ("hello", " from", " the", " provider")
RESPONSES_INPUT_TOKENS = 11  # the usage a /v1/responses reply reports (output: one token a word)


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """(certificate, key) PEM files for `host` (an IP SAN), valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "caldera-test-provider")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "provider.crt", directory / "provider.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ProviderServer:
    """Serve with `await start()`; `url` is the https base URL; `received` lists the requests."""

    directory: Path
    host: str = "127.0.0.1"
    status: int = 200  # set to e.g. 429 to answer every request with that error
    # When set, the data of a streamed /v1/responses reply's final event (`response.completed`),
    # in place of the real one: tests send malformed usage with it.
    responses_final: bytes | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    cert: Path | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def start(self) -> ProviderServer:
        self.cert, key = self_signed_cert(self.directory, self.host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        app = web.Application()
        app.router.add_post("/{prefix:.*}chat/completions", self._openai)
        app.router.add_post("/{prefix:.*}completions", self._openai)
        app.router.add_post("/{prefix:.*}messages", self._anthropic)
        app.router.add_post("/{prefix:.*}responses", self._responses)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> dict[str, Any] | web.Response:
        body = json.loads(await request.read())
        self.received.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        if self.status != 200:
            return web.json_response({"error": {"message": "slow down", "type": "rate_limit_error"}},
                                     status=self.status)
        return dict(body)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        usage = {"prompt_tokens": 7, "completion_tokens": len(REPLY_WORDS), "total_tokens": 7 + len(REPLY_WORDS)}
        base = {"id": "chatcmpl-1", "created": 1, "model": body.get("model")}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(REPLY_WORDS)},
                 "finish_reason": "stop"}]})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for word in REPLY_WORDS:
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0)
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        text = "".join(REPLY_WORDS)
        usage = {"input_tokens": 9, "output_tokens": len(REPLY_WORDS)}
        if not body.get("stream"):
            return web.json_response({"id": "msg_1", "type": "message", "role": "assistant",
                                      "model": body.get("model"), "content": [{"type": "text", "text": text}],
                                      "stop_reason": "end_turn", "usage": usage})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "model": body.get("model"), "content": [],
                                                  "usage": {"input_tokens": 9, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "ping"},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
              for w in REPLY_WORDS),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
            {"type": "message_stop"},
        ]
        for event in events:
            await resp.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        text = "".join(REPLY_WORDS)
        usage = {"input_tokens": RESPONSES_INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": len(REPLY_WORDS), "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": RESPONSES_INPUT_TOKENS + len(REPLY_WORDS)}
        message = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        final = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
                 "model": body.get("model"), "output": [message], "usage": usage}
        if not body.get("stream"):
            return web.json_response(final)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        started = {**final, "status": "in_progress", "output": [], "usage": None}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {**message, "status": "in_progress", "content": []}},
            *({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
               "delta": w} for w in REPLY_WORDS),
            {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
             "text": text},
            {"type": "response.output_item.done", "output_index": 0, "item": message},
        ]
        for number, event in enumerate(events):
            await resp.write(f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': number})}"
                             "\n\n".encode())
            await asyncio.sleep(0)
        last = self.responses_final
        if last is None:
            last = json.dumps({"type": "response.completed", "response": final,
                               "sequence_number": len(events)}).encode()
        half = len(last) // 2  # the final event in two writes: the router must join its halves
        await resp.write(b"event: response.completed\ndata: " + last[:half])
        await asyncio.sleep(0)
        await resp.write(last[half:] + b"\n\n")
        await resp.write_eof()
        return resp
