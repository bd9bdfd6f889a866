"""Token counts out of provider replies: a JSON body, or an SSE stream read event by event.

OpenAI chat and completions report `usage.prompt_tokens`/`completion_tokens`; the Responses API
and Anthropic report `input_tokens`/`output_tokens` (Anthropic's cache reads and writes count
as input; the Responses API already includes its cached tokens in `input_tokens`). A streamed
Responses reply reports usage once, in its final event (`response.completed`, `.incomplete` or
`.failed`); an Anthropic stream in `message_start` and `message_delta`; an OpenAI chat stream
in a chunk with `usage`. Usage the router cannot read counts as nothing: it never fails or
alters a reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from router.providers import anthropic

RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# A partial event longer than this is dropped unread (a stream that never ends an event must
# not grow the router's memory); real final events, whole replies included, are far smaller.
MAX_EVENT_BYTES = 16 << 20


class EventSplitter:
    """Complete SSE events out of chunks as they arrive; a partial event waits for its end.
    Line ends are normalised to `\\n` (a `\\r\\n` split across chunks included)."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for an event end
        self._cr = False

    @property
    def idle(self) -> bool:
        """No partial event is waiting."""
        return not self._buf and not self._cr

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._cr:
            chunk, self._cr = b"\r" + chunk, False
        if chunk.endswith(b"\r"):
            chunk, self._cr = chunk[:-1], True
        self._buf += chunk.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        while True:
            end = self._buf.find(b"\n\n", max(0, self._scanned - 1))
            if end < 0:
                break
            if end:  # blank lines between events dispatch nothing
                out.append(bytes(self._buf[:end]))
            del self._buf[:end + 2]
            self._scanned = 0
        self._scanned = len(self._buf)
        if self._scanned > self.max_event_bytes:
            self._buf.clear()
            self._scanned = 0
        return out


def data(event: bytes) -> bytes | None:
    """The event's data (several `data:` lines joined by newlines, as SSE says), or None."""
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return lines[0].strip() if len(lines) == 1 else b"\n".join(lines).strip()


def counts(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a usage object of any of the three shapes, or None when
    it is not a usage object (absent, null, or not a JSON object)."""
    if not isinstance(usage, Mapping):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        u = anthropic.usage_of(usage)
        return u["prompt_tokens"], u["completion_tokens"]
    return anthropic.token_count(usage.get("prompt_tokens")), anthropic.token_count(usage.get("completion_tokens"))


def of_body(payload: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a decoded JSON reply; (0, 0) when it has no usable usage."""
    found = counts(payload.get("usage")) if isinstance(payload, Mapping) else None
    return found or (0, 0)


def stream_kind(path: str, provider_type: str) -> str:
    """How a stream on `path` reports usage: "responses", "messages" or "chat"."""
    if path == "/v1/responses":
        return "responses"
    if path == "/v1/messages" and provider_type == "Anthropic":
        return "messages"
    return "chat"


class StreamUsage:
    """Usage read off an SSE stream on the side: `feed` every chunk after it went to the client,
    read `prompt` and `completion` at the end. Only events that mention usage are decoded."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prompt = 0
        self.completion = 0
        self.events = EventSplitter()
        self._anthropic: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> None:
        if self.events.idle and chunk.endswith(b"\n\n") and b'"usage"' not in chunk:
            return  # whole events, none with usage: the common case costs one scan
        for event in self.events.feed(chunk):
            self.event(event)

    def event(self, event: bytes) -> None:
        """Take the usage of one complete event (its bytes, without the blank line)."""
        payload = data(event)
        if not payload or b'"usage"' not in payload:
            return
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(decoded, dict):
            self.decoded(decoded)

    def decoded(self, event: Mapping[str, Any]) -> None:
        """Take the usage of one decoded event."""
        kind = event.get("type")
        if self.kind == "responses":
            response = event.get("response")
            if kind in RESPONSES_FINAL and isinstance(response, Mapping):
                self._set(counts(response.get("usage")))
        elif self.kind == "messages":
            holder = event.get("message") if kind == "message_start" else event
            usage = holder.get("usage") if isinstance(holder, Mapping) else None
            if kind in ("message_start", "message_delta") and isinstance(usage, Mapping):
                self._anthropic.update(usage)
                self._set(counts(self._anthropic))
        else:
            self._set(counts(event.get("usage")))

    def _set(self, found: tuple[int, int] | None) -> None:
        if found is not None:
            self.prompt, self.completion = found
