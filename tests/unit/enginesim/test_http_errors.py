"""Malformed and impossible requests get vLLM-shaped JSON errors with the right status."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from enginesim.testing import SimProcess


def post(sim: SimProcess, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
    if content is not None:
        return httpx.post(sim.url + path, content=content, headers={"Content-Type": "application/json"})
    return httpx.post(sim.url + path, json=body)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == resp.status_code
    return dict(body["error"])


def test_invalid_json_is_400(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", content=b"{not json")
    assert resp.status_code == 400
    assert "Invalid JSON" in error_of(resp)["message"]


def test_non_object_body_is_400(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", [1, 2])
    assert resp.status_code == 400


def test_missing_prompt_names_the_field(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", {"model": "sim-model"})
    assert resp.status_code == 400
    assert error_of(resp)["param"] == "prompt"


def test_empty_prompt_is_400(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", {"model": "sim-model", "prompt": "   "})
    assert resp.status_code == 400
    assert error_of(resp)["param"] == "prompt"


def test_missing_messages_names_the_field(sim: SimProcess) -> None:
    resp = post(sim, "/v1/chat/completions", {"model": "sim-model"})
    assert resp.status_code == 400
    assert error_of(resp)["param"] == "messages"


@pytest.mark.parametrize(("field", "value"), [("max_tokens", "ten"), ("stream", "yes"), ("temperature", "hot"),
                                              ("max_tokens", 0), ("seed", 1.5), ("n", 2)])
def test_wrong_field_types_are_400_naming_the_field(sim: SimProcess, field: str, value: Any) -> None:
    resp = post(sim, "/v1/completions", {"model": "sim-model", "prompt": "x", field: value})
    assert resp.status_code == 400
    assert error_of(resp)["param"] == field


def test_message_without_role_is_400(sim: SimProcess) -> None:
    resp = post(sim, "/v1/chat/completions", {"messages": [{"content": "hi"}]})
    assert resp.status_code == 400
    assert error_of(resp)["param"] == "messages.0.role"


def test_unknown_model_is_404(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", {"model": "nope", "prompt": "x"})
    assert resp.status_code == 404
    err = error_of(resp)
    assert err["type"] == "NotFoundError"
    assert err["message"] == "The model `nope` does not exist."


def test_prompt_over_max_model_len_is_400_with_vllms_message(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", {"model": "sim-model", "prompt": "w " * 2100})
    assert resp.status_code == 400
    assert "maximum context length is 2048 tokens" in error_of(resp)["message"]


def test_max_tokens_over_remaining_context_is_400(sim: SimProcess) -> None:
    resp = post(sim, "/v1/completions", {"model": "sim-model", "prompt": "a b c", "max_tokens": 2046})
    assert resp.status_code == 400
    assert "'max_tokens' or 'max_completion_tokens' is too large: 2046" in error_of(resp)["message"]


def test_openai_client_raises_bad_request(sim: SimProcess) -> None:
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="sim-model", prompt="a", max_tokens=5000)


def test_openai_client_raises_not_found(sim: SimProcess) -> None:
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "a"}])


def test_full_waiting_queue_is_429(start_sim: Any) -> None:
    sim = start_sim("--max-num-seqs", "1", "--max-waiting-queue-length", "1", "--time-scale", "1")
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        long = {"model": "sim-model", "prompt": "x", "max_tokens": 300, "stream": True}
        with client.stream("POST", "/v1/completions", json=long) as running:
            assert running.status_code == 200
            with httpx.Client(base_url=sim.url, timeout=30) as c2, \
                    c2.stream("POST", "/v1/completions", json=long) as queued:
                assert queued.status_code == 200
                rejected = httpx.post(sim.url + "/v1/completions", json=long)
                assert rejected.status_code == 429
                assert error_of(rejected)["type"] == "TooManyRequestsError"


def test_queue_full_status_can_be_503(start_sim: Any) -> None:
    sim = start_sim("--max-num-seqs", "1", "--max-waiting-queue-length", "0", "--time-scale", "1",
                    "--queue-full-status", "503")
    long = {"model": "sim-model", "prompt": "x", "max_tokens": 300, "stream": True}
    with httpx.Client(base_url=sim.url, timeout=30) as client, client.stream("POST", "/v1/completions",
                                                                             json=long) as running:
        assert running.status_code == 200
        assert httpx.post(sim.url + "/v1/completions", json=long).status_code == 503
