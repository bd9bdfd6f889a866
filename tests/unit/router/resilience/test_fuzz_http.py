"""Fuzzing the router's HTTP surface (with limits, fairness and overload enabled): never a crash,
every error a 4xx/5xx JSON body."""

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config import RouterConfig
from router.harness import Engines, free_port, server
from router.server import Router

pytestmark = pytest.mark.slow


class _Served:
    """An engine and a router on a private event loop in a thread, for synchronous hypothesis tests."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engines = Engines(tmp)
        self.url = ""
        self.runner: web.AppRunner | None = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def start(self) -> None:
        eng = await self.engines.start("e", labels={"app": "m"})
        port = free_port()
        cfg = RouterConfig.model_validate({
            "port": port, "kvEvents": False, "metricsInterval": 0.2, "accessLog": False,
            "modelServers": [server("m", model="base-model")],
            "modelRoutes": [{"metadata": {"name": "m", "namespace": "default"},
                             "spec": {"modelName": "m", "rateLimit": {"inputTokensPerUnit": 10**9},
                                      "rules": [{"targetModels": [{"modelServerName": "m"}]}]}}],
            "endpoints": [eng.endpoint()], "fairness": {"maxConcurrent": 8},
            "resilience": {"overload": {"maxInflightPerEndpoint": 64}}})
        router = Router(cfg)
        router.load_static()
        self.runner = web.AppRunner(router.app, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.runner is not None:
            self.run(self.runner.cleanup())
        self.engines.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Served, httpx.Client]]:
    s = _Served(tmp_path_factory.mktemp("fuzz"))
    s.run(s.start())
    with httpx.Client(base_url=s.url, timeout=30) as client:
        yield s, client
    s.stop()


_scalars = st.none() | st.booleans() | st.integers(-5, 40) | st.sampled_from([0, 10**12, -(2**63)]) \
    | st.floats(allow_nan=True) | st.text(max_size=30)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_fields = {"model": st.sampled_from(["m", "", "nope"]) | _json, "prompt": _json, "messages": _json,
           "max_tokens": _json, "stream": _json, "n": _json, "echo": _json, "stream_options": _json,
           "max_completion_tokens": _json}
_bodies = st.fixed_dictionaries({}, optional=_fields).map(orjson.dumps) | st.binary(max_size=200) \
    | _json.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS))
_header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
_headers = st.dictionaries(st.sampled_from(["authorization", "x-api-key", "x-user-id", "content-type",
                                            "x-session-id", "x-request-id"]), _header_text, max_size=4)
_paths = st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz",
                          "/metrics", "/debug/state", "/v1/embeddings", "/"]) \
    | st.text(st.characters(min_codepoint=48, max_codepoint=122), max_size=20).map(lambda t: "/" + t)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=_paths, headers=_headers,
       body=_bodies)
def test_any_request_gets_an_answer_and_every_error_is_json(served, method, path, headers, body):
    _, client = served
    resp = client.request(method, path, headers=headers, content=body if method != "GET" else None)
    if resp.status_code >= 400:
        assert 400 <= resp.status_code < 600
        error = orjson.loads(resp.content)["error"]
        assert isinstance(error["message"], str) and error["message"]


def test_router_still_serves_after_the_fuzzing(served):
    _, client = served
    resp = client.post("/v1/completions", json={"model": "m", "prompt": "alive", "max_tokens": 1})
    assert resp.status_code == 200
