"""Request migration: continue a stream that broke mid-way on another pod (as Dynamo does).

The relay sits between the upstream SSE stream and the client. It forwards only complete
events, remembers the text generated so far, and when the upstream breaks the request is
resent elsewhere as prompt + generated text (chat: the text as a final assistant message
with `continue_final_message`) with the remaining `max_tokens`. Engines generate tokens as a
function of the whole context, so the continuation is exactly what the broken stream would
have produced. Events of later attempts are rewritten to the first attempt's `id` and
`created`, the resumed chat's role-only opening event is dropped and the final usage counts
the whole request, so the client sees one uninterrupted stream: no token lost or repeated.

Pure: no I/O; the server decides where to resend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from router.request import ParsedRequest

DONE = b"[DONE]"
_COMPACT_AT = 256


class NotMigratable(Exception):
    """The request cannot be resumed elsewhere; the reason says why."""


@dataclass
class StreamRelay:
    """What the client has been sent of one streamed completion; rewrites later attempts."""

    chat: bool
    attempt: int = 0
    tokens: int = 0  # content events forwarded to the client, over all attempts
    carried: int = 0  # tokens generated before the current attempt began
    finished: bool = False  # a finish_reason was forwarded
    done: bool = False  # [DONE] was forwarded
    response_id: str | None = None
    created: int | None = None
    pods: list[str] = field(default_factory=list)  # pods the stream broke on
    response: Any = None  # the client's prepared StreamResponse, once the first attempt started
    _parts: list[str] = field(default_factory=list)
    _buf: bytes = b""

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def next_attempt(self) -> None:
        """The current upstream broke: drop its partial event, count what was carried over."""
        self._buf = b""
        self.attempt += 1
        self.carried = self.tokens

    def feed(self, chunk: bytes) -> bytes:
        """Bytes of complete events to forward to the client for this upstream chunk."""
        data = self._buf + chunk if self._buf else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buf = data
            return b""
        self._buf = data[end + 2:]
        complete = data[: end + 2]
        if self.attempt == 0:
            for event in complete.split(b"\n\n")[:-1]:
                self._observe(event)
            return complete
        out: list[bytes] = []
        for event in complete.split(b"\n\n")[:-1]:
            rewritten = self._rewrite(event)
            if rewritten is not None:
                out.append(rewritten + b"\n\n")
        return b"".join(out)

    def _payload(self, event: bytes) -> bytes | None:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                return line[5:].strip()
        return None

    def _observe(self, event: bytes) -> dict[str, Any] | None:
        payload = self._payload(event)
        if payload is None:
            return None
        if payload == DONE:
            self.done = True
            return None
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        if self.response_id is None:
            self.response_id = obj.get("id")
            self.created = obj.get("created")
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            text = (choice.get("delta") or {}).get("content") if self.chat else choice.get("text")
            if isinstance(text, str) and text:
                self._parts.append(text)
                self.tokens += 1
                if len(self._parts) >= _COMPACT_AT:  # one string, not a str object per token
                    self._parts[:] = ["".join(self._parts)]
            if choice.get("finish_reason"):
                self.finished = True
        return obj

    def _rewrite(self, event: bytes) -> bytes | None:
        payload = self._payload(event)
        if payload is None:
            return event
        if payload == DONE:
            self.done = True
            return event
        obj = self._observe(event)
        if obj is None:
            return event
        choices = obj.get("choices") or []
        if self.chat and choices and all(_role_only(c) for c in choices):
            return None  # the resumed stream's opening event; the client already had one
        if self.response_id is not None:
            obj["id"] = self.response_id
        if self.created is not None:
            obj["created"] = self.created
        usage = obj.get("usage")
        if isinstance(usage, dict) and self.carried:
            usage["prompt_tokens"] = max(0, int(usage.get("prompt_tokens") or 0) - self.carried)
            usage["completion_tokens"] = int(usage.get("completion_tokens") or 0) + self.carried
        return b"data: " + orjson.dumps(obj)


def _role_only(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta") or {}
    return not delta.get("content") and not choice.get("finish_reason") and "role" in delta


def token_prompt(req: ParsedRequest) -> bool:
    """A completion whose prompt is one list of token ids (resumed with the generated text's ids)."""
    prompt = req.body.get("prompt")
    return not req.is_chat and isinstance(prompt, list) and bool(prompt) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt)


def migratable(req: ParsedRequest) -> str | None:
    """None when a stream of this request can be resumed elsewhere, else the reason it cannot."""
    body = req.body
    if (body.get("n") or 1) != 1:
        return "n > 1"
    if body.get("echo"):
        return "echo"
    if req.is_chat or token_prompt(req):
        return None
    prompt = body.get("prompt")
    if isinstance(prompt, str) or (isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str)):
        return None
    return "only a single text or token-id prompt can be resumed"


def resume_body(req: ParsedRequest, model: str, relay: StreamRelay,
                generated_ids: list[int] | None = None) -> bytes:
    """The request that continues `relay`'s stream on another pod.

    Token-id prompts need `generated_ids`, the generated text tokenized by the target engine.
    """
    reason = migratable(req)
    if reason is not None:
        raise NotMigratable(reason)
    if token_prompt(req) and generated_ids is None:
        raise NotMigratable("a token-id prompt needs the generated text's token ids")
    text = relay.text
    extra: dict[str, Any] = {}
    for name in ("max_tokens", "max_completion_tokens"):
        limit = req.body.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool):
            left = limit - relay.tokens
            if left < 1:
                raise NotMigratable(f"{name} already reached")
            extra[name] = left
    if req.is_chat:
        messages = list(req.body["messages"])
        last = messages[-1] if messages else None
        if req.body.get("continue_final_message") and isinstance(last, dict) and last.get("role") == "assistant":
            messages[-1] = {**last, "content": (last.get("content") or "") + text}
        else:
            messages.append({"role": "assistant", "content": text})
        extra.update(messages=messages, continue_final_message=True, add_generation_prompt=False)
    elif generated_ids is not None:
        extra["prompt"] = [*req.body["prompt"], *generated_ids]
    else:
        prompt = req.body["prompt"]
        extra["prompt"] = (prompt if isinstance(prompt, str) else prompt[0]) + text
    return req.with_model(model, extra=extra)


def closing_events(relay: StreamRelay, message: str) -> bytes:
    """What to send a client whose stream could not be continued: an error event, then [DONE]."""
    if relay.done:
        return b""
    if relay.finished:
        return b"data: [DONE]\n\n"
    err = {"error": {"message": message, "type": "upstream_error", "param": None, "code": "stream_broken"}}
    return b"data: " + orjson.dumps(err) + b"\n\ndata: [DONE]\n\n"
