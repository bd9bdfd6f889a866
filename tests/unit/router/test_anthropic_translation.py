"""OpenAI chat <-> Anthropic Messages translation (router.providers.anthropic), pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.providers.anthropic import (
    StreamTranslator,
    to_chat_completion,
    to_messages_request,
    to_openai_error,
)
from router.request import RequestError

TOOL: dict[str, Any] = {"type": "function", "function": {"name": "weather", "description": "forecast",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_tools_and_tool_choice_become_anthropic_tools() -> None:
    out = to_messages_request({"messages": [{"role": "user", "content": "rain?"}], "tools": [TOOL],
                               "tool_choice": "required"}, "claude")
    assert (out["tools"], out["tool_choice"]) == (
        [{"name": "weather", "description": "forecast", "input_schema": TOOL["function"]["parameters"]}],
        {"type": "any"})


def test_assistant_tool_calls_and_tool_results_become_tool_use_and_tool_result_blocks() -> None:
    out = to_messages_request({"messages": [
        {"role": "user", "content": "rain?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}, "claude")
    assert out["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "weather",
                                           "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]}]


def test_a_base64_image_becomes_an_image_block() -> None:
    out = to_messages_request({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, "claude")
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]


def test_more_than_one_choice_is_refused_naming_n() -> None:
    with pytest.raises(RequestError) as info:
        to_messages_request({"n": 2, "messages": [{"role": "user", "content": "x"}]}, "claude")
    assert (info.value.status, info.value.param) == (400, "n")


def test_tool_use_reply_becomes_tool_calls_with_json_arguments() -> None:
    reply = to_chat_completion({"id": "msg_1", "model": "claude", "stop_reason": "tool_use",
                                "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                                             "input": {"city": "Oslo"}}],
                                "usage": {"input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 1}})
    choice = reply["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"], reply["usage"]["prompt_tokens"]) == (
        "tool_calls", None, 5)
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}


def test_max_tokens_stop_is_length() -> None:
    reply = to_chat_completion({"content": [{"type": "text", "text": "a"}], "stop_reason": "max_tokens"})
    assert reply["choices"][0]["finish_reason"] == "length"


def test_an_anthropic_error_body_becomes_an_openai_error_body() -> None:
    body = to_openai_error(b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}')
    assert json.loads(body) == {"error": {"message": "busy", "type": "overloaded_error", "param": None, "code": None}}


def chunks(out: bytes) -> list[Any]:
    return [p if p == "[DONE]" else json.loads(p) for p in
            (line[6:] for line in out.decode().split("\n") if line.startswith("data: "))]


def test_streamed_tool_use_becomes_tool_call_deltas() -> None:
    t = StreamTranslator("claude", include_usage=True)
    stream: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m", "model": "claude", "usage": {"input_tokens": 4}}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu", "name": "w"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"c'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '":1}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}},
        {"type": "message_stop"}]
    events = chunks(b"".join(t.feed(e) for e in stream))
    calls = [e["choices"][0]["delta"]["tool_calls"][0] for e in events[:-2] if "tool_calls" in e["choices"][0]["delta"]]
    assert "".join(c["function"]["arguments"] for c in calls) == '{"c":1}'
    assert {c["index"] for c in calls} == {0} and calls[0]["id"] == "tu"
    assert events[-2]["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert events[-1] == "[DONE]"


def test_a_stream_error_event_becomes_an_error_chunk_and_done() -> None:
    events = chunks(StreamTranslator("claude", False).feed(
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
    assert (events[0]["error"]["message"], events[-1]) == ("busy", "[DONE]")
