import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.request import CHAT_COMPLETIONS, COMPLETIONS, RequestError, parse_request


def test_completion_prompt_is_kept_without_copy():
    raw = orjson.dumps({"model": "m", "prompt": "hello world", "max_tokens": 5, "stream": True})
    req = parse_request(COMPLETIONS, raw)
    assert (req.model, req.stream, req.max_tokens, req.prompt_text) == ("m", True, 5, "hello world")
    assert req.prompt_text is req.body["prompt"]


def test_chat_messages_are_flattened_in_order():
    raw = orjson.dumps({"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    req = parse_request(CHAT_COMPLETIONS, raw)
    assert req.prompt_text == "system: be brief\nuser: hi\n"


def test_token_id_prompt_is_exact():
    req = parse_request(COMPLETIONS, orjson.dumps({"model": "m", "prompt": [1, 2, 3]}))
    assert req.prompt_token_ids == [1, 2, 3]
    assert req.estimated_prompt_tokens == 3


def test_unchanged_model_forwards_original_bytes():
    raw = orjson.dumps({"model": "m", "prompt": "x"})
    assert parse_request(COMPLETIONS, raw).with_model("m") is raw


def test_rewritten_model_keeps_other_fields():
    req = parse_request(COMPLETIONS, orjson.dumps({"model": "m", "prompt": "x", "temperature": 0.5}))
    assert orjson.loads(req.with_model("real")) == {"model": "real", "prompt": "x", "temperature": 0.5}


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"prompt": "x"}', "model"),
    (b'{"model": 3, "prompt": "x"}', "model"),
    (b'{"model": "m"}', "prompt"),
    (b'{"model": "m", "prompt": {"a": 1}}', "prompt"),
    (b'{"model": "m", "prompt": "x", "max_tokens": -1}', "max_tokens"),
    (b'{"model": "m", "prompt": "x", "max_tokens": true}', "max_tokens"),
    (b'{"model": "m", "prompt": "x", "stream": "yes"}', "stream"),
])
def test_malformed_completion_is_a_400_naming_the_field(body, param):
    with pytest.raises(RequestError) as err:
        parse_request(COMPLETIONS, body)
    assert err.value.status == 400
    assert err.value.param == param


@pytest.mark.parametrize("messages", [None, [], "hi", [3], [{"content": "x"}], [{"role": "u", "content": 5}],
                                      [{"role": "u", "content": [7]}]])
def test_malformed_chat_messages_are_a_400(messages):
    with pytest.raises(RequestError) as err:
        parse_request(CHAT_COMPLETIONS, orjson.dumps({"model": "m", "messages": messages}))
    assert err.value.status == 400
    assert err.value.param is not None and err.value.param.startswith("messages")


def test_error_body_is_openai_shaped():
    err = RequestError(400, "bad", param="model")
    assert orjson.loads(err.body()) == {"error": {"message": "bad", "type": "invalid_request_error",
                                                   "param": "model", "code": None}}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([COMPLETIONS, CHAT_COMPLETIONS]))
def test_parser_never_raises_anything_but_request_error_on_bytes(raw, path):
    try:
        parse_request(path, raw)
    except RequestError as exc:
        assert 400 <= exc.status < 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional={"model": json_values, "prompt": json_values, "messages": json_values,
                                           "stream": json_values, "max_tokens": json_values}),
       st.sampled_from([COMPLETIONS, CHAT_COMPLETIONS]))
def test_parser_never_raises_anything_but_request_error_on_json(body, path):
    try:
        req = parse_request(path, json.dumps(body).encode())
    except RequestError as exc:
        assert exc.status == 400
        return
    assert isinstance(req.model, str) and req.max_tokens >= 1
