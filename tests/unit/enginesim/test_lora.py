"""LoRA adapters with vLLM's semantics: static modules, runtime load/unload, max-loras batching."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from enginesim.testing import SimProcess, launch_sim, wait_until

Start = Callable[..., SimProcess]


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """One LoRA-enabled engine for tests that add state under their own names."""
    sim = launch_sim(tmp_path_factory.mktemp("lora"), "--model", "sim-model", "--time-scale", "20",
                     "--num-gpu-blocks", "512", "--enable-lora", "--lora-modules", "sql=/adapters/sql",
                     "--lora-modules", '{"name": "chat", "path": "/a/chat"}', "--max-loras", "2")
    yield sim
    sim.stop()


def models(sim: SimProcess) -> dict[str, dict[str, object]]:
    return {m["id"]: m for m in httpx.get(sim.url + "/v1/models").json()["data"]}


def test_static_lora_module_is_listed_with_its_parent(lora: SimProcess) -> None:
    listed = models(lora)
    assert listed["sql"]["parent"] == "sim-model"
    assert listed["sql"]["root"] == "/adapters/sql"


def test_json_form_of_lora_modules_is_accepted(lora: SimProcess) -> None:
    assert models(lora)["chat"]["root"] == "/a/chat"


def test_request_for_a_loaded_adapter_succeeds(lora: SimProcess) -> None:
    client = openai.OpenAI(base_url=lora.url + "/v1", api_key="x", max_retries=0)
    resp = client.completions.create(model="sql", prompt="select", max_tokens=2)
    assert resp.model == "sql"


def test_adapter_prefix_cache_is_separate_from_the_base_model(lora: SimProcess) -> None:
    prompt = " ".join(f"sep{i}" for i in range(40))
    base = {"prompt": prompt, "max_tokens": 1}
    httpx.post(lora.url + "/v1/completions", json=base)
    resp = httpx.post(lora.url + "/v1/completions", json={**base, "model": "sql"}).json()
    assert resp["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_runtime_load_then_unload(lora: SimProcess) -> None:
    sim = lora
    loaded = httpx.post(sim.url + "/v1/load_lora_adapter", json={"lora_name": "new", "lora_path": "/a/new"})
    assert loaded.status_code == 200
    assert "new" in models(sim)
    ok = httpx.post(sim.url + "/v1/completions", json={"model": "new", "prompt": "x", "max_tokens": 1})
    assert ok.status_code == 200
    unloaded = httpx.post(sim.url + "/v1/unload_lora_adapter", json={"lora_name": "new"})
    assert unloaded.status_code == 200
    gone = httpx.post(sim.url + "/v1/completions", json={"model": "new", "prompt": "x", "max_tokens": 1})
    assert gone.status_code == 404
    assert gone.json()["error"]["message"] == "The model `new` does not exist."


def test_loading_an_adapter_twice_is_400(lora: SimProcess) -> None:
    sim = lora
    body = {"lora_name": "dup", "lora_path": "/a/dup"}
    assert httpx.post(sim.url + "/v1/load_lora_adapter", json=body).status_code == 200
    again = httpx.post(sim.url + "/v1/load_lora_adapter", json=body)
    assert again.status_code == 400
    assert again.json()["error"]["message"] == "The lora adapter 'dup' has already been loaded."


def test_unloading_an_unknown_adapter_is_404(lora: SimProcess) -> None:
    sim = lora
    resp = httpx.post(sim.url + "/v1/unload_lora_adapter", json={"lora_name": "ghost"})
    assert resp.status_code == 404
    assert resp.json()["error"]["message"] == "The lora adapter 'ghost' cannot be found."


def test_load_without_enable_lora_is_refused(start_sim: Start) -> None:
    sim = start_sim()
    resp = httpx.post(sim.url + "/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": "/a"})
    assert resp.status_code == 400


def test_max_loras_keeps_a_second_adapter_waiting(start_sim: Start) -> None:
    sim = start_sim("--enable-lora", "--lora-modules", "a=/a", "--lora-modules", "b=/b", "--max-loras", "1",
                    "--time-scale", "1")
    body = {"prompt": "x", "max_tokens": 400, "stream": True}
    with httpx.Client(base_url=sim.url, timeout=30) as c1, c1.stream("POST", "/v1/completions",
                                                                     json={**body, "model": "a"}) as ra, \
            httpx.Client(base_url=sim.url, timeout=30) as c2, c2.stream("POST", "/v1/completions",
                                                                        json={**body, "model": "b"}) as rb:
        assert ra.status_code == rb.status_code == 200

        def waiting_b() -> bool:
            text = httpx.get(sim.url + "/metrics").text
            return 'running_lora_adapters="a"' in text and 'waiting_lora_adapters="b"' in text

        wait_until(waiting_b, timeout=5)
