"""ExternalModelProvider targets end to end: the router in front of a real HTTPS provider
(router.providers.harness, self-signed certificate made in the test) on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.harness import RunningRouter, wait_until
from router.providers.adapters import upstream_url
from router.providers.api import CREDENTIAL_LABEL
from router.providers.harness import REPLY_WORDS, RESPONSES_INPUT_TOKENS, ProviderServer
from router.providers.provider import compile_providers
from router.request import RequestError
from router.routing import ProviderDecision, RouteTable, compile_route, compile_server, match

NS = "default"
TOKEN = "sk-test-123"


def secret(name: str = "creds", labelled: bool = True, value: str = TOKEN) -> dict[str, Any]:
    labels = {CREDENTIAL_LABEL: "true"} if labelled else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "data": {"token": base64.b64encode(value.encode()).decode()}}


def emp(url: str, name: str = "ext", **spec: Any) -> dict[str, Any]:
    spec.setdefault("auth", {"secretRef": {"name": "creds", "key": "token"}})
    return {"apiVersion": "networking.serving.volcano.sh/v1alpha1", "kind": "ExternalModelProvider",
            "metadata": {"name": name, "namespace": NS}, "spec": {"baseURL": url, **spec}}


def route(model: str = "gpt", provider: str = "ext") -> dict[str, Any]:
    return {"apiVersion": "networking.serving.volcano.sh/v1alpha1", "kind": "ModelRoute",
            "metadata": {"name": model, "namespace": NS},
            "spec": {"modelName": model, "rules": [{"targetModels": [{"externalModelProviderName": provider}]}]}}


async def start(start_router: Callable[..., Any], server: ProviderServer, *providers: dict[str, Any],
                secrets: list[dict[str, Any]] | None = None, trust: bool = True) -> RunningRouter:
    config: dict[str, Any] = {"modelRoutes": [route()], "externalModelProviders": list(providers),
                              "secrets": [secret()] if secrets is None else secrets, "kvEvents": False}
    if trust:
        config["providers"] = {"caFile": str(server.cert)}
    router: RunningRouter = await start_router(**config)
    return router


CHAT = {"model": "gpt", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}


async def chat(router: RunningRouter, body: dict[str, Any], headers: dict[str, str] | None = None,
               path: str = "/v1/chat/completions") -> tuple[int, Any]:
    async with await router.post(path, body, headers) as r:
        return r.status, await r.json(content_type=None)


async def stream_events(router: RunningRouter, body: dict[str, Any], path: str = "/v1/chat/completions"
                        ) -> list[Any]:
    async with await router.post(path, {**body, "stream": True}) as r:
        assert r.status == 200, await r.text()
        text = (await r.read()).decode()
    payloads = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


async def test_openai_provider_gets_the_bearer_credential_not_the_client_authorization(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    status, _ = await chat(router, CHAT, {"authorization": "Bearer client-secret"})
    assert status == 200
    assert provider.received[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_openai_provider_reply_reaches_the_client(start_router: Callable[..., Any],
                                                         provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    status, body = await chat(router, CHAT)
    assert (status, body["choices"][0]["message"]["content"]) == (200, "".join(REPLY_WORDS))


async def test_provider_model_replaces_the_request_model(start_router: Callable[..., Any],
                                                         provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, model="gpt-4o-mini"))
    await chat(router, CHAT)
    assert provider.received[0].body["model"] == "gpt-4o-mini"


async def test_static_headers_are_added_and_unlisted_client_headers_dropped(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, headers={"OpenAI-Organization": "org-7"}))
    await chat(router, CHAT, {"x-request-id": "r-1", "x-internal": "secret"})
    headers = provider.received[0].headers
    assert (headers["openai-organization"], headers["x-request-id"], "x-internal" in headers) == ("org-7", "r-1", False)


async def test_base_url_path_replaces_the_v1_prefix(start_router: Callable[..., Any],
                                                    provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url + "/api/v3"))
    await chat(router, CHAT)
    assert provider.received[0].path == "/api/v3/chat/completions"


async def test_apikey_scheme_sends_x_api_key(start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider,
                         emp(provider.url, auth={"scheme": "APIKey", "secretRef": {"name": "creds", "key": "token"}}))
    await chat(router, CHAT)
    headers = provider.received[0].headers
    assert (headers.get("x-api-key"), "authorization" in headers) == (TOKEN, False)


async def test_streaming_chunks_pass_through_in_order(start_router: Callable[..., Any],
                                                      provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    events = await stream_events(router, CHAT)
    words = [e["choices"][0]["delta"]["content"] for e in events if e != "[DONE]"]
    assert (words, events[-1]) == (list(REPLY_WORDS), "[DONE]")


async def test_usage_chunk_the_router_asked_for_is_withheld_from_the_client(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    events = await stream_events(router, CHAT)
    assert provider.received[0].body["stream_options"] == {"include_usage": True}
    assert not [e for e in events if e != "[DONE]" and "usage" in e]


async def test_usage_chunk_the_client_asked_for_is_passed_on(start_router: Callable[..., Any],
                                                              provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    events = await stream_events(router, {**CHAT, "stream_options": {"include_usage": True}})
    assert [e["usage"]["completion_tokens"] for e in events if e != "[DONE]" and e.get("usage")] == [4]


async def test_anthropic_provider_gets_x_api_key_and_a_version(start_router: Callable[..., Any],
                                                                provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, providerType="Anthropic"))
    await chat(router, {"model": "gpt", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
               path="/v1/messages")
    headers = provider.received[0].headers
    assert (headers["x-api-key"], headers["anthropic-version"], provider.received[0].path) == (
        TOKEN, "2023-06-01", "/v1/messages")


async def test_anthropic_messages_request_passes_through_unchanged(start_router: Callable[..., Any],
                                                                   provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, providerType="Anthropic"))
    body = {"model": "gpt", "max_tokens": 20, "system": "s", "messages": [{"role": "user", "content": "hi"}]}
    status, reply = await chat(router, body, path="/v1/messages")
    assert (status, provider.received[0].body, reply["content"][0]["text"]) == (200, body, "".join(REPLY_WORDS))


async def test_openai_chat_is_translated_to_an_anthropic_messages_request(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, providerType="Anthropic", model="claude-x"))
    await chat(router, {**CHAT, "max_tokens": 33, "stop": "END"})
    assert provider.received[0].body == {"model": "claude-x", "system": "be brief", "max_tokens": 33,
                                         "stop_sequences": ["END"],
                                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


async def test_anthropic_reply_is_translated_to_a_chat_completion(start_router: Callable[..., Any],
                                                                  provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, providerType="Anthropic"))
    status, body = await chat(router, CHAT)
    assert status == 200
    assert (body["object"], body["choices"][0]["message"]["content"], body["choices"][0]["finish_reason"],
            body["usage"]) == ("chat.completion", "".join(REPLY_WORDS), "stop",
                               {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13})


async def test_anthropic_stream_is_translated_to_chat_chunks(start_router: Callable[..., Any],
                                                             provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, providerType="Anthropic"))
    events = await stream_events(router, CHAT)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    finishes = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"][0]["finish_reason"]]
    assert (text, finishes, events[-1]) == ("".join(REPLY_WORDS), ["stop"], "[DONE]")


async def test_self_signed_provider_is_refused_without_its_ca(start_router: Callable[..., Any],
                                                              provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url), trust=False)
    status, body = await chat(router, CHAT)
    assert (status, body["error"]["code"], provider.received) == (502, "tls", [])


async def test_insecure_skip_verify_accepts_a_self_signed_provider(start_router: Callable[..., Any],
                                                                   provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, insecureSkipVerify=True), trust=False)
    status, _ = await chat(router, CHAT)
    assert status == 200


async def test_unlabelled_credential_secret_makes_the_provider_unavailable(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url), secrets=[secret(labelled=False)])
    status, body = await chat(router, CHAT)
    assert (status, CREDENTIAL_LABEL in body["error"]["message"], provider.received) == (503, True, [])


async def test_provider_error_status_and_body_reach_the_client(start_router: Callable[..., Any],
                                                               provider: ProviderServer) -> None:
    provider.status = 429
    router = await start(start_router, provider, emp(provider.url))
    status, body = await chat(router, CHAT)
    assert (status, body["error"]["message"]) == (429, "slow down")


async def test_messages_path_is_refused_by_an_openai_provider(start_router: Callable[..., Any],
                                                              provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    status, body = await chat(router, {"model": "gpt", "messages": []}, path="/v1/messages")
    assert (status, body["error"]["code"]) == (400, "unsupported_path")


async def test_provider_requests_are_counted_in_metrics(start_router: Callable[..., Any],
                                                        provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    await chat(router, CHAT)
    async with router.session.get(router.url + "/metrics") as r:
        text = await r.text()
    assert 'server="default/ext",status="200"' in text


# ---- pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "base", "path", "expected"), [
    ("OpenAI", "https://api.openai.com", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions"),
    ("OpenAI", "https://h/api/v3/", "/v1/chat/completions", "https://h/api/v3/chat/completions"),
    ("Anthropic", "https://api.anthropic.com", "/v1/messages", "https://api.anthropic.com/v1/messages"),
    ("Anthropic", "https://h/v1", "/v1/messages", "https://h/v1/messages"),
    ("Anthropic", "https://h/proxy", "/v1/messages", "https://h/proxy/v1/messages"),
])
def test_upstream_url_follows_kthena(kind: str, base: str, path: str, expected: str) -> None:
    assert upstream_url(kind, base, path) == expected


def conditions(obj: dict[str, Any], secrets: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    (p,) = compile_providers([obj], secrets)
    return {c.type: (c.status, c.reason) for c in p.conditions}


def test_resolved_credential_makes_the_provider_ready() -> None:
    assert conditions(emp("https://h"), [secret()]) == {
        "CredentialsResolved": ("True", "CredentialResolved"), "Ready": ("True", "Ready")}


def test_no_auth_needs_no_credential() -> None:
    assert conditions(emp("https://h", auth=None), []) == {
        "CredentialsResolved": ("True", "CredentialNotRequired"), "Ready": ("True", "Ready")}


def test_missing_secret_key_is_credential_key_not_found() -> None:
    obj = emp("https://h", auth={"secretRef": {"name": "creds", "key": "other"}})
    assert conditions(obj, [secret()])["CredentialsResolved"] == ("False", "CredentialKeyNotFound")


def test_whitespace_only_credential_is_invalid() -> None:
    assert conditions(emp("https://h"), [secret(value="  \n")])["Ready"] == ("False", "CredentialInvalid")


def test_reserved_static_header_makes_the_configuration_invalid() -> None:
    obj = emp("https://h", headers={"Authorization": "x"})
    assert conditions(obj, [secret()])["Ready"] == ("False", "ConfigurationInvalid")


async def test_messages_path_requires_router_auth_and_the_client_key_never_reaches_the_provider(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router: RunningRouter = await start_router(
        modelRoutes=[route()], externalModelProviders=[emp(provider.url, providerType="Anthropic")],
        secrets=[secret()], kvEvents=False, providers={"caFile": str(provider.cert)},
        auth={"apiKeys": [{"key": "sk-alice-000", "user": "alice"}]})
    body = {"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    denied, _ = await chat(router, body, path="/v1/messages")
    allowed, _ = await chat(router, body, {"x-api-key": "sk-alice-000"}, path="/v1/messages")
    assert (denied, allowed, [r.headers["x-api-key"] for r in provider.received]) == (401, 200, [TOKEN])


def test_a_route_target_names_a_provider_in_its_namespace() -> None:
    (p,) = compile_providers([emp("https://h", auth=None, model="up")], [])
    decision = match(RouteTable.build([compile_route(route())], [], [p]), "gpt", "/v1/chat/completions", {})
    assert isinstance(decision, ProviderDecision)
    assert (decision.provider.key, decision.upstream_model) == ("default/ext", "up")


def test_a_route_to_a_missing_provider_is_not_found() -> None:
    with pytest.raises(RequestError) as info:
        match(RouteTable.build([compile_route(route())], [], []), "gpt", "/v1/chat/completions", {})
    assert info.value.status == 404


def test_canary_weights_split_between_a_model_server_and_a_provider() -> None:
    canary = route()
    canary["spec"]["rules"][0]["targetModels"] = [{"modelServerName": "local", "weight": 90},
                                                   {"externalModelProviderName": "ext", "weight": 10}]
    server = compile_server({"metadata": {"name": "local", "namespace": NS}, "spec": {
        "inferenceEngine": "vLLM", "workloadSelector": {"matchLabels": {"app": "x"}}, "workloadPort": {"port": 8000}}})
    table = RouteTable.build([compile_route(canary)], [server], compile_providers([emp("https://h", auth=None)], []))
    rng = random.Random(7)
    hits = sum(isinstance(match(table, "gpt", "/v1/chat/completions", {}, None, rng), ProviderDecision)
               for _ in range(10_000))
    assert 700 <= hits <= 1300


async def test_route_input_token_limit_refuses_a_provider_request_before_it_is_sent(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    limited = route()
    limited["spec"]["rateLimit"] = {"inputTokensPerUnit": 12, "unit": "minute"}
    router = await start_router(modelRoutes=[limited], externalModelProviders=[emp(provider.url)],
                                secrets=[secret()], kvEvents=False, providers={"caFile": str(provider.cert)})
    first, _ = await chat(router, CHAT)
    second, body = await chat(router, CHAT)
    assert (first, second) == (200, 429) and body["error"]["type"] == "rate_limit_error"
    assert len(provider.received) == 1


async def test_route_output_token_limit_is_charged_with_the_provider_reply(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    limited = route()
    limited["spec"]["rateLimit"] = {"outputTokensPerUnit": 1, "unit": "hour"}
    router = await start_router(modelRoutes=[limited], externalModelProviders=[emp(provider.url)],
                                secrets=[secret()], kvEvents=False, providers={"caFile": str(provider.cert)})
    first, _ = await chat(router, CHAT)
    second, body = await chat(router, CHAT)
    assert (first, second) == (200, 429) and "output" in body["error"]["message"]
    assert len(provider.received) == 1


# ---- usage of the Responses API (and the other provider streams) ---------------------------

RESPONSES = {"model": "gpt", "instructions": "be brief", "input": "hi"}
RESPONSES_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
                    *["response.output_text.delta"] * len(REPLY_WORDS), "response.output_text.done",
                    "response.output_item.done", "response.completed"]


async def metric(router: RunningRouter, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    async with router.session.get(router.url + "/metrics") as r:
        text = await r.text()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


async def tokens(router: RunningRouter) -> tuple[float, float]:
    """(prompt, completion) tokens counted once a /v1/responses request has been recorded."""
    await wait_until(lambda: metric(router, "caldera_router_requests_total", path="/v1/responses"), timeout=10)
    return (await metric(router, "caldera_router_tokens_total", kind="prompt"),
            await metric(router, "caldera_router_tokens_total", kind="completion"))


async def responses_stream(router: RunningRouter, body: dict[str, Any]) -> tuple[list[str], list[bytes]]:
    """(event names, data of each event) of a streamed /v1/responses reply."""
    async with await router.post("/v1/responses", {**body, "stream": True}) as r:
        assert r.status == 200, await r.text()
        raw = await r.read()
    events = [e for e in raw.split(b"\n\n") if e]
    names = [e.split(b"\n")[0].removeprefix(b"event: ").decode() for e in events]
    return names, [e.split(b"\ndata: ", 1)[1] for e in events]


async def test_responses_request_reaches_the_provider_unchanged(start_router: Callable[..., Any],
                                                                provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    status, reply = await chat(router, RESPONSES, path="/v1/responses")
    assert (status, provider.received[0].path, provider.received[0].body) == (200, "/v1/responses", RESPONSES)
    assert reply["output"][0]["content"][0]["text"] == "".join(REPLY_WORDS)


async def test_responses_reply_tokens_are_counted(start_router: Callable[..., Any],
                                                  provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    await chat(router, RESPONSES, path="/v1/responses")
    assert await tokens(router) == (RESPONSES_INPUT_TOKENS, len(REPLY_WORDS))


async def test_streamed_responses_events_reach_the_client_in_order(start_router: Callable[..., Any],
                                                                   provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    names, data = await responses_stream(router, RESPONSES)
    deltas = [json.loads(d)["delta"] for n, d in zip(names, data, strict=True) if n == "response.output_text.delta"]
    assert (names, deltas) == (RESPONSES_EVENTS, list(REPLY_WORDS))


async def test_streamed_responses_tokens_are_counted_from_the_completed_event(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    await responses_stream(router, RESPONSES)
    assert await tokens(router) == (RESPONSES_INPUT_TOKENS, len(REPLY_WORDS))


@pytest.mark.parametrize("final", [
    b'{"type": "response.completed", "response": {"usage": {"input_tokens": 11, "output_',
    b'{"type": "response.completed", "response": {"usage": {"input_tokens": "eleven", "output_tokens": [4]}}}',
    b'{"type": "response.completed", "response": {"usage": "eleven"}}',
    b'{"type": "response.completed", "response": ["usage"]}',
], ids=["truncated-json", "non-numeric-counts", "usage-not-an-object", "response-not-an-object"])
async def test_malformed_usage_event_reaches_the_client_whole_and_counts_no_tokens(
        start_router: Callable[..., Any], provider: ProviderServer, final: bytes) -> None:
    provider.responses_final = final
    router = await start(start_router, provider, emp(provider.url))
    names, data = await responses_stream(router, RESPONSES)
    assert (names, data[-1]) == (RESPONSES_EVENTS, final)
    assert await tokens(router) == (0, 0)


async def test_route_input_token_limit_refuses_a_responses_request_before_it_is_sent(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    limited = route()
    limited["spec"]["rateLimit"] = {"inputTokensPerUnit": 12, "unit": "minute"}
    router = await start_router(modelRoutes=[limited], externalModelProviders=[emp(provider.url)],
                                secrets=[secret()], kvEvents=False, providers={"caFile": str(provider.cert)})
    body = {"model": "gpt", "input": "x" * 40}  # an estimated 10 tokens
    first, _ = await chat(router, body, path="/v1/responses")
    second, reply = await chat(router, body, path="/v1/responses")
    assert (first, second, reply["error"]["type"], len(provider.received)) == (200, 429, "rate_limit_error", 1)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_route_output_token_limit_is_charged_with_a_responses_reply(
        start_router: Callable[..., Any], provider: ProviderServer, stream: bool) -> None:
    limited = route()
    limited["spec"]["rateLimit"] = {"outputTokensPerUnit": 1, "unit": "hour"}
    router = await start_router(modelRoutes=[limited], externalModelProviders=[emp(provider.url)],
                                secrets=[secret()], kvEvents=False, providers={"caFile": str(provider.cert)})
    async with await router.post("/v1/responses", {**RESPONSES, "stream": stream}) as r:
        first = r.status
        await r.read()
    await tokens(router)  # the reply is accounted for
    second, body = await chat(router, RESPONSES, path="/v1/responses")
    assert (first, second) == (200, 429) and "output" in body["error"]["message"]
    assert len(provider.received) == 1


async def test_access_log_records_the_tokens_of_a_streamed_responses_reply(
        start_router: Callable[..., Any], provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    log = router.router.access_log
    assert log is not None
    log.stream = io.BytesIO()
    await responses_stream(router, RESPONSES)

    def entries() -> list[dict[str, Any]]:
        log.flush()
        assert isinstance(log.stream, io.BytesIO)
        return [json.loads(line) for line in log.stream.getvalue().splitlines()]

    (entry,) = await wait_until(entries, timeout=10)
    assert (entry["path"], entry["stream"], entry["prompt_tokens"], entry["completion_tokens"]) == (
        "/v1/responses", True, RESPONSES_INPUT_TOKENS, len(REPLY_WORDS))


async def test_streamed_anthropic_messages_tokens_are_counted(start_router: Callable[..., Any],
                                                              provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url, providerType="Anthropic"))
    body = {"model": "gpt", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    async with await router.post("/v1/messages", {**body, "stream": True}) as r:
        await r.read()
    await wait_until(lambda: metric(router, "caldera_router_requests_total", path="/v1/messages"), timeout=10)
    assert (await metric(router, "caldera_router_tokens_total", kind="prompt"),
            await metric(router, "caldera_router_tokens_total", kind="completion")) == (9, len(REPLY_WORDS))


async def test_chat_stream_whose_client_asked_for_usage_is_counted(start_router: Callable[..., Any],
                                                                   provider: ProviderServer) -> None:
    router = await start(start_router, provider, emp(provider.url))
    await stream_events(router, {**CHAT, "stream_options": {"include_usage": True}})
    await wait_until(lambda: metric(router, "caldera_router_requests_total", path="/v1/chat/completions"),
                     timeout=10)
    assert await metric(router, "caldera_router_tokens_total", kind="completion") == len(REPLY_WORDS)
