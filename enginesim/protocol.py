"""Parsing and validating OpenAI/SGLang request bodies, and vLLM-shaped errors.

Errors are ``{"error": {"message", "type", "param", "code"}}`` with ``code`` the HTTP
status, as vLLM's current ``ErrorResponse``. Unknown body fields are ignored (vLLM
logs and ignores them); wrong types of known fields are 400s naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from enginesim.tokenizer import Tokenizer, apply_chat_template

ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, err_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.err_type = err_type or ERROR_TYPES.get(status, HTTPStatus(status).phrase.replace(" ", "") + "Error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.err_type, "param": self.param, "code": self.status}}


def parse_json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    return body


def _check(body: Mapping[str, Any], name: str, types: tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass; a bool is never a valid number here.
    if isinstance(value, bool) and bool not in types:
        raise ApiError(400, f"'{name}': expected {what}, got a boolean", name)
    if not isinstance(value, types):
        raise ApiError(400, f"'{name}': expected {what}, got {type(value).__name__}", name)
    return value


@dataclass
class GenerationRequest:
    kind: str  # "completion" | "chat" | "sglang"
    model: str | None
    prompt_ids: list[int]
    prompt_text: str | None
    max_tokens: int | None
    stream: bool = False
    include_usage: bool = False
    continuous_usage_stats: bool = False
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    cache_salt: str | None = None
    echo: bool = False
    kv_transfer_params: dict[str, Any] | None = None
    bootstrap_host: str | None = None
    bootstrap_port: int | None = None
    bootstrap_room: int | None = None
    request_id: str | None = None


def _parse_common(body: Mapping[str, Any], req: GenerationRequest) -> None:
    _check(body, "temperature", (int, float), "a number")
    _check(body, "top_p", (int, float), "a number")
    _check(body, "top_k", (int,), "an integer")
    _check(body, "user", (str,), "a string")
    n = _check(body, "n", (int,), "an integer")
    if n is not None and n != 1:
        raise ApiError(400, "'n': the simulator generates one choice per request (n must be 1)", "n")
    stream = _check(body, "stream", (bool,), "a boolean")
    req.stream = bool(stream)
    opts = _check(body, "stream_options", (dict,), "an object")
    if opts is not None:
        if not req.stream:
            raise ApiError(400, "'stream_options': only allowed when 'stream' is true", "stream_options")
        req.include_usage = bool(opts.get("include_usage"))
        req.continuous_usage_stats = bool(opts.get("continuous_usage_stats"))
    req.seed = _check(body, "seed", (int,), "an integer")
    stop = body.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        req.stop = list(stop)
    elif stop is not None:
        raise ApiError(400, "'stop': expected a string or a list of strings", "stop")
    stop_ids = body.get("stop_token_ids")
    if stop_ids is not None:
        if not isinstance(stop_ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in stop_ids):
            raise ApiError(400, "'stop_token_ids': expected a list of integers", "stop_token_ids")
        req.stop_token_ids = list(stop_ids)
    req.cache_salt = _check(body, "cache_salt", (str,), "a string")
    req.kv_transfer_params = _check(body, "kv_transfer_params", (dict,), "an object")
    req.bootstrap_host = _check(body, "bootstrap_host", (str,), "a string")
    req.bootstrap_port = _check(body, "bootstrap_port", (int,), "an integer")
    room = body.get("bootstrap_room")
    if room is not None and (isinstance(room, bool) or not isinstance(room, int)):
        raise ApiError(400, "'bootstrap_room': expected an integer", "bootstrap_room")
    req.bootstrap_room = room
    req.request_id = _check(body, "request_id", (str,), "a string")


def _max_tokens(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = _check(body, name, (int,), "an integer")
        if value is not None:
            if value < 1:
                raise ApiError(400, f"'{name}': must be at least 1, got {value}", name)
            return int(value)
    return None


def _token_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def parse_completion(body: Mapping[str, Any], tokenizer: Tokenizer) -> GenerationRequest:
    model = _check(body, "model", (str,), "a string")
    if "prompt" not in body:
        raise ApiError(400, "'prompt': field required", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and (isinstance(prompt[0], str) or _token_list(prompt[0])):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids, text = tokenizer.encode(prompt), prompt
    elif _token_list(prompt) and prompt:
        ids, text = list(prompt), None
    elif isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str | list) for p in prompt):
        raise ApiError(400, "'prompt': the simulator accepts one prompt per request", "prompt")
    else:
        raise ApiError(400, "'prompt': expected a string or a non-empty list of token ids", "prompt")
    if not ids:
        raise ApiError(400, "'prompt': the prompt is empty (no tokens)", "prompt")
    req = GenerationRequest("completion", model, ids, text, _max_tokens(body, "max_tokens"))
    req.echo = bool(_check(body, "echo", (bool,), "a boolean"))
    _parse_common(body, req)
    return req


def parse_chat(body: Mapping[str, Any], tokenizer: Tokenizer) -> GenerationRequest:
    model = _check(body, "model", (str,), "a string")
    if "messages" not in body:
        raise ApiError(400, "'messages': field required", "messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages': expected a non-empty list of messages", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ApiError(400, f"'messages[{i}]': expected an object", f"messages.{i}")
        if not isinstance(m.get("role"), str):
            raise ApiError(400, f"'messages[{i}].role': expected a string", f"messages.{i}.role")
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ApiError(400, f"'messages[{i}].content': expected a string or a list of parts",
                           f"messages.{i}.content")
    add_gen = _check(body, "add_generation_prompt", (bool,), "a boolean")
    continue_final = _check(body, "continue_final_message", (bool,), "a boolean")
    if continue_final and add_gen:
        raise ApiError(400, "'continue_final_message': cannot be combined with add_generation_prompt=true",
                       "continue_final_message")
    if continue_final and messages[-1].get("role") != "assistant":
        raise ApiError(400, "'continue_final_message': the last message must be an assistant message",
                       "continue_final_message")
    # continue_final_message renders the partial assistant turn open-ended, so a chat
    # resumed with the text generated so far continues token for token.
    text = apply_chat_template(messages, add_generation_prompt=not continue_final and add_gen is not False)
    req = GenerationRequest("chat", model, tokenizer.encode(text), text,
                            _max_tokens(body, "max_completion_tokens", "max_tokens"))
    _parse_common(body, req)
    return req


def parse_sglang_generate(body: Mapping[str, Any], tokenizer: Tokenizer) -> GenerationRequest:
    """SGLang's native ``/generate``: ``text`` or ``input_ids`` plus ``sampling_params``."""
    text = body.get("text")
    input_ids = body.get("input_ids")
    if isinstance(text, list) and len(text) == 1:
        text = text[0]
    if isinstance(text, str):
        ids = tokenizer.encode(text)
    elif _token_list(input_ids) and input_ids:
        ids, text = list(input_ids), None
    else:
        raise ApiError(400, "'text' or 'input_ids': one of them is required (a string or a list of token ids)", "text")
    if not ids:
        raise ApiError(400, "'text': the prompt is empty (no tokens)", "text")
    params = _check(body, "sampling_params", (dict,), "an object") or {}
    max_new = _check(params, "max_new_tokens", (int,), "an integer")
    if max_new is not None and max_new < 1:
        raise ApiError(400, f"'sampling_params.max_new_tokens': must be at least 1, got {max_new}", "max_new_tokens")
    req = GenerationRequest("sglang", body.get("model") if isinstance(body.get("model"), str) else None,
                            ids, text, max_new)
    merged = {**params, **{k: v for k, v in body.items() if k != "sampling_params"}}
    merged.pop("stream_options", None)
    merged["n"] = None
    _parse_common(merged, req)
    req.request_id = body.get("rid") if isinstance(body.get("rid"), str) else req.request_id
    return req


def context_length_error(prompt_len: int, max_tokens: int | None, max_model_len: int) -> ApiError | None:
    """vLLM's messages for requests that do not fit ``max_model_len``."""
    if prompt_len >= max_model_len or (max_tokens is None and prompt_len >= max_model_len):
        return ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_len} input tokens. Please reduce the length of the input messages.",
            "input_tokens",
        )
    if max_tokens is not None and prompt_len + max_tokens > max_model_len:
        return ApiError(
            400,
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum "
            f"context length is {max_model_len} tokens and your request has {prompt_len} input tokens "
            f"({max_tokens} > {max_model_len} - {prompt_len}).",
            "max_tokens",
        )
    return None
