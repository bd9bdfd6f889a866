"""Token counts read off provider replies (router.providers.usage): pure, over bytes and JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.providers.adapters import prompt_text
from router.providers.usage import EventSplitter, StreamUsage, counts, of_body

USAGE = {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 4, "total_tokens": 15}


def sse(*events: dict[str, Any], newline: str = "\n") -> bytes:
    return "".join(f"event: {e['type']}{newline}data: {json.dumps(e)}{newline}{newline}" for e in events).encode()


RESPONSES_STREAM = sse(
    {"type": "response.created", "response": {"id": "resp_1", "usage": None}},
    {"type": "response.output_text.delta", "delta": "hello"},
    {"type": "response.completed", "response": {"id": "resp_1", "usage": USAGE}},
)


def read(stream: bytes, kind: str, chunk: int) -> tuple[int, int]:
    counted = StreamUsage(kind)
    for i in range(0, len(stream), chunk):
        counted.feed(stream[i:i + chunk])
    return counted.prompt, counted.completion


def test_responses_stream_usage_comes_from_the_completed_event() -> None:
    assert read(RESPONSES_STREAM, "responses", len(RESPONSES_STREAM)) == (11, 4)


def test_responses_stream_fed_a_byte_at_a_time_gives_the_same_usage() -> None:
    assert read(RESPONSES_STREAM, "responses", 1) == (11, 4)


def test_responses_stream_fed_an_event_at_a_time_gives_the_same_usage() -> None:
    counted = StreamUsage("responses")
    for event in RESPONSES_STREAM.split(b"\n\n")[:-1]:
        counted.feed(event + b"\n\n")
    assert (counted.prompt, counted.completion) == (11, 4)


def test_crlf_line_ends_split_across_chunks_still_end_events() -> None:
    stream = sse({"type": "response.completed", "response": {"usage": USAGE}}, newline="\r\n")
    assert read(stream, "responses", 3) == (11, 4)


@pytest.mark.parametrize("final", ["response.incomplete", "response.failed"])
def test_incomplete_and_failed_responses_report_their_usage(final: str) -> None:
    assert read(sse({"type": final, "response": {"usage": USAGE}}), "responses", 7) == (11, 4)


def test_usage_outside_a_final_responses_event_is_not_counted() -> None:
    stream = sse({"type": "response.output_text.delta", "delta": "x", "usage": USAGE})
    assert read(stream, "responses", 5) == (0, 0)


def test_anthropic_stream_counts_input_from_message_start_and_output_from_message_delta() -> None:
    stream = sse({"type": "message_start", "message": {"usage": {"input_tokens": 9, "cache_read_input_tokens": 2,
                                                                 "output_tokens": 1}}},
                 {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
                 {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}})
    assert read(stream, "messages", 4) == (11, 4)


def test_chat_stream_counts_its_usage_chunk() -> None:
    stream = (b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
              b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}\n\ndata: [DONE]\n\n')
    assert read(stream, "chat", 10) == (7, 4)


def test_non_numeric_and_negative_token_counts_count_as_zero() -> None:
    assert counts({"input_tokens": "eleven", "output_tokens": -4, "cache_read_input_tokens": True}) == (0, 0)


def test_a_body_without_a_usage_object_counts_nothing() -> None:
    assert [of_body(b) for b in ({"usage": "x"}, ["usage"], None, {"usage": {"prompt_tokens": 3}})] == [
        (0, 0), (0, 0), (0, 0), (3, 0)]


def test_an_event_longer_than_the_cap_is_dropped_and_the_next_one_read() -> None:
    splitter = EventSplitter(max_event_bytes=64)
    assert splitter.feed(b"data: " + b"x" * 100) == []
    assert splitter.feed(b"\n\ndata: next\n\n") == [b"data: next"]


def test_prompt_text_of_a_responses_request_covers_instructions_and_input_items() -> None:
    body = {"model": "m", "instructions": "be brief", "tools": [{"type": "function", "name": "secret_tool"}],
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"},
                                                   {"type": "input_image", "image_url": "data:xyz"}]},
                      {"type": "function_call_output", "call_id": "c1", "output": "42"}]}
    assert prompt_text(body) == "be brief\nhello\n42"
