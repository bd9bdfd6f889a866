"""OpenAI request bodies: parsed once, validated, with the few facts routing needs.

The body is decoded with orjson exactly once. The prompt is never copied: `prompt_text` is
the request's own string when the prompt is a single string, and a join only for chat
messages (which the engines flatten through a chat template anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

COMPLETIONS = "/v1/completions"
CHAT_COMPLETIONS = "/v1/chat/completions"

# Characters per token when no tokenizer is at hand (the estimate Kthena and llm-d use).
CHARS_PER_TOKEN = 4
DEFAULT_MAX_TOKENS = 16


class RequestError(Exception):
    """A client error, rendered as an OpenAI-style JSON error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, err_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.err_type = err_type

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.err_type,
                                       "param": self.param, "code": self.code}})


@dataclass
class ParsedRequest:
    """A validated OpenAI request. `body` is the decoded JSON object, shared, never copied."""

    path: str
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    max_tokens: int
    prompt_text: str
    prompt_token_ids: list[int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_chat(self) -> bool:
        return self.path == CHAT_COMPLETIONS

    @property
    def estimated_prompt_tokens(self) -> int:
        if self.prompt_token_ids is not None:
            return len(self.prompt_token_ids)
        return max(1, -(-len(self.prompt_text) // CHARS_PER_TOKEN))

    def with_model(self, model: str, extra: Mapping[str, Any] | None = None,
                   drop: tuple[str, ...] = ()) -> bytes:
        """The body to send upstream. The original bytes are reused when nothing changes."""
        if model == self.model and not extra and not drop:
            return self.raw
        out = dict(self.body)
        out["model"] = model
        for key in drop:
            out.pop(key, None)
        if extra:
            out.update(extra)
        return orjson.dumps(out)


def _bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, param=param)


def _positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"'{name}' must be a positive integer, got {value!r}", name)
    return value


def _chat_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array of message objects", "messages")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"'messages[{i}]' must be an object", f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise _bad(f"'messages[{i}].role' must be a non-empty string", f"messages[{i}].role")
        content = message.get("content")
        parts.append(role)
        parts.append(": ")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise _bad(f"'messages[{i}].content[{j}]' must be an object",
                               f"messages[{i}].content[{j}]")
                text = part.get("text")
                if text is not None and not isinstance(text, str):
                    raise _bad(f"'messages[{i}].content[{j}].text' must be a string",
                               f"messages[{i}].content[{j}].text")
                parts.append(text or "")
        elif content is not None:
            raise _bad(f"'messages[{i}].content' must be a string, an array of parts or null",
                       f"messages[{i}].content")
        parts.append("\n")
    return "".join(parts)


def _completion_prompt(prompt: Any) -> tuple[str, list[int] | None]:
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return "".join(prompt), None
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return "", list(prompt)
        if all(isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
               for p in prompt):
            return "", [t for p in prompt for t in p]
    raise _bad("'prompt' must be a string, an array of strings, or an array of token ids", "prompt")


def parse_request(path: str, raw: bytes, headers: Mapping[str, str] | None = None) -> ParsedRequest:
    """Parse and validate an OpenAI completions or chat-completions body.

    Raises RequestError (400) naming the field and the reason for anything malformed.
    """
    if path not in (COMPLETIONS, CHAT_COMPLETIONS):
        raise RequestError(404, f"unknown path {path!r}", code="not_found")
    if not raw:
        raise _bad("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad(f"request body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a non-empty string", "model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad(f"'stream' must be a boolean, got {stream!r}", "stream")
    max_tokens = _positive_int(body, "max_tokens")
    max_completion = _positive_int(body, "max_completion_tokens")
    token_ids: list[int] | None = None
    if path == CHAT_COMPLETIONS:
        text = _chat_text(body.get("messages"))
    else:
        if "prompt" not in body:
            raise _bad("'prompt' is required for /v1/completions", "prompt")
        text, token_ids = _completion_prompt(body["prompt"])
    return ParsedRequest(
        path=path, body=body, raw=raw, model=model, stream=stream,
        max_tokens=max_completion or max_tokens or DEFAULT_MAX_TOKENS,
        prompt_text=text, prompt_token_ids=token_ids, headers=headers or {},
    )
