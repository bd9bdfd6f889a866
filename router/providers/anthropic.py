"""OpenAI chat completions <-> Anthropic Messages API, as pure functions over JSON objects.

Kthena proxies only Anthropic-native `/v1/messages` requests to an Anthropic provider (and so
do we, unchanged). Clients that speak OpenAI chat to a route whose target is an Anthropic
provider would get a 400 there; Caldera translates instead, so one OpenAI client can use
every target: the request is rewritten to a Messages request, the reply (or the stream of
events) back to an OpenAI chat completion (or chunks).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from router.request import RequestError

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter"}


def _bad(message: str, param: str) -> RequestError:
    return RequestError(400, message, param=param)


def _image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0]
        if ";base64" not in header or not media_type:
            raise _bad("image data URLs must be base64 encoded with a media type", where)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad("content must be a string or an array of parts", where)
    blocks = []
    for j, part in enumerate(content):
        pwhere = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad("image_url.url must be a string", pwhere)
            blocks.append(_image_block(url, pwhere))
        else:
            raise _bad(f"content part type {kind!r} cannot be sent to an Anthropic provider", pwhere)
    return blocks


def _text_of(content: Any, where: str) -> str:
    return "\n".join(b["text"] for b in _content_blocks(content, where) if b["type"] == "text")


def _tool_use_blocks(calls: Any, where: str) -> list[dict[str, Any]]:
    blocks = []
    for k, call in enumerate(calls or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad("tool_calls need function.name", f"{where}[{k}]")
        try:
            arguments = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise _bad("function.arguments must be a JSON object", f"{where}[{k}].function.arguments") from None
        blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_{k}", "name": fn["name"],
                       "input": arguments})
    return blocks


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    raise _bad(f"tool_choice {choice!r} is not supported", "tool_choice")


def to_messages_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat-completions body as an Anthropic Messages body (RequestError when it cannot be)."""
    if (body.get("n") or 1) != 1:
        raise _bad("n > 1 is not supported by Anthropic providers", "n")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(body.get("messages") or []):
        where = f"messages[{i}]"
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(_text_of(content, f"{where}.content"))
        elif role == "user":
            messages.append({"role": "user", "content": _content_blocks(content, f"{where}.content")})
        elif role == "assistant":
            blocks = _content_blocks(content, f"{where}.content")
            blocks += _tool_use_blocks(message.get("tool_calls"), f"{where}.tool_calls")
            messages.append({"role": "assistant", "content": blocks})
        elif role == "tool":
            messages.append({"role": "user", "content": [{
                "type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
                "content": _text_of(content, f"{where}.content")}]})
        else:
            raise _bad(f"role {role!r} cannot be sent to an Anthropic provider", f"{where}.role")
    out: dict[str, Any] = {"model": model, "messages": messages,
                           "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens")
                           or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                         "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
                        for t in body["tools"] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    return out


def token_count(value: Any) -> int:
    """A token count as reported, or 0 when it is not a non-negative number (a provider's bad
    usage must not fail a reply that has otherwise arrived)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        return 0
    return int(value)


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """Anthropic usage as OpenAI usage (cache reads and writes count as prompt tokens)."""
    u = usage or {}
    prompt = sum(token_count(u.get(k)) for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens"))
    completion = token_count(u.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def to_chat_completion(message: Mapping[str, Any], created: int | None = None) -> dict[str, Any]:
    """An Anthropic Messages response as an OpenAI chat completion."""
    text = "".join(b.get("text", "") for b in message.get("content") or [] if b.get("type") == "text")
    calls = [{"id": b.get("id"), "type": "function",
              "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input") or {}).decode()}}
             for b in message.get("content") or [] if b.get("type") == "tool_use"]
    reply: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        reply["tool_calls"] = calls
    return {"id": f"chatcmpl-{message.get('id', '')}", "object": "chat.completion",
            "created": created or int(time.time()), "model": message.get("model"),
            "choices": [{"index": 0, "message": reply,
                         "finish_reason": FINISH_REASONS.get(str(message.get("stop_reason")), "stop")}],
            "usage": usage_of(message.get("usage"))}


def to_openai_error(body: bytes) -> bytes:
    """An Anthropic error body (`{"type": "error", "error": {...}}`) as an OpenAI error body."""
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {"message": body[:500].decode(errors="replace")}
    return orjson.dumps({"error": {"message": str(error.get("message") or "provider error"),
                                   "type": str(error.get("type") or "provider_error"), "param": None, "code": None}})


class StreamTranslator:
    """Anthropic stream events in, OpenAI chat-completion chunks (SSE `data:` lines) out."""

    def __init__(self, model: str, include_usage: bool, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = created or int(time.time())
        self.id = "chatcmpl-"
        self.usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self.done = False
        self.completion_tokens = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

    def feed(self, event: Mapping[str, Any]) -> bytes:
        """The SSE bytes for one Anthropic event (often empty: pings, block starts and stops)."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = f"chatcmpl-{message.get('id', '')}"
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tool_index.setdefault(int(event.get("index", 0)), len(self.tool_index))
                return self._chunk({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                                                    "function": {"name": block.get("name"), "arguments": ""}}]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(int(event.get("index", 0)), 0)
                return self._chunk({"tool_calls": [{"index": index,
                                                    "function": {"arguments": delta.get("partial_json", "")}}]})
            return b""
        if kind == "message_delta":
            self.usage.update(event.get("usage") or {})
            reason = (event.get("delta") or {}).get("stop_reason")
            return self._chunk({}, FINISH_REASONS.get(str(reason), "stop"))
        if kind == "message_stop":
            self.done = True
            usage = usage_of(self.usage)
            self.completion_tokens = usage["completion_tokens"]
            out = b""
            if self.include_usage:
                out += b"data: " + orjson.dumps({"id": self.id, "object": "chat.completion.chunk",
                                                 "created": self.created, "model": self.model, "choices": [],
                                                 "usage": usage}) + b"\n\n"
            return out + b"data: [DONE]\n\n"
        if kind == "error":
            self.done = True
            return b"data: " + to_openai_error(orjson.dumps(event)) + b"\n\ndata: [DONE]\n\n"
        return b""
