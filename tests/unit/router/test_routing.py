import random

import pytest

from router.request import RequestError
from router.routing import (
    RouteConfigError,
    RouteTable,
    compile_route,
    compile_server,
    match,
    parse_duration,
)


def server(name, model=None, ns="default", engine="vLLM"):
    return compile_server({"metadata": {"name": name, "namespace": ns},
                           "spec": {"model": model, "inferenceEngine": engine,
                                    "workloadSelector": {"matchLabels": {"app": name}}}})


def route(name, model, rules, ns="default", created="2026-01-01T00:00:00Z", loras=None):
    return compile_route({"metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
                          "spec": {"modelName": model, "loraAdapters": loras or [], "rules": rules}})


def to(*targets):
    return [{"modelServerName": t[0], "weight": t[1]} if isinstance(t, tuple) else {"modelServerName": t}
            for t in targets]


def table(routes, servers):
    return RouteTable.build(routes, servers)


def test_model_is_rewritten_to_the_servers_model():
    t = table([route("r", "chat", [{"targetModels": to("s")}])], [server("s", model="llama-3-8b")])
    d = match(t, "chat", "/v1/completions", {})
    assert (d.server.name, d.upstream_model, d.lora) == ("s", "llama-3-8b", None)


def test_unknown_model_is_a_404_naming_it():
    t = table([route("r", "chat", [{"targetModels": to("s")}])], [server("s")])
    with pytest.raises(RequestError) as err:
        match(t, "other", "/v1/completions", {})
    assert err.value.status == 404 and "other" in err.value.message


@pytest.mark.parametrize(("rule", "headers", "expected"), [
    ({"exact": "premium"}, {"user-type": "premium"}, "big"),
    ({"exact": "premium"}, {"user-type": "premium-plus"}, "small"),
    ({"prefix": "prem"}, {"user-type": "premium-plus"}, "big"),
    ({"regex": "p.*m"}, {"user-type": "premium"}, "big"),
    ({"regex": "p.*m"}, {"user-type": "xpremium"}, "small"),
    ({"exact": "premium"}, {}, "small"),
])
def test_header_rules_match_in_order_first_wins(rule, headers, expected):
    t = table([route("r", "chat", [
        {"name": "vip", "modelMatch": {"headers": {"User-Type": rule}}, "targetModels": to("big")},
        {"name": "rest", "targetModels": to("small")},
    ])], [server("big"), server("small")])
    assert match(t, "chat", "/v1/completions", headers).server.name == expected


def test_uri_rule_matches_the_path():
    t = table([route("r", "chat", [
        {"modelMatch": {"uri": {"prefix": "/v1/chat"}}, "targetModels": to("chat-srv")},
        {"targetModels": to("completion-srv")},
    ])], [server("chat-srv"), server("completion-srv")])
    assert match(t, "chat", "/v1/chat/completions", {}).server.name == "chat-srv"
    assert match(t, "chat", "/v1/completions", {}).server.name == "completion-srv"


def test_body_model_condition_must_equal_the_request_model():
    t = table([route("r", "chat", [{"modelMatch": {"body": {"model": "other"}}, "targetModels": to("s")}])],
              [server("s")])
    with pytest.raises(RequestError) as err:
        match(t, "chat", "/v1/completions", {})
    assert err.value.code == "route_not_found"


def test_oldest_route_wins_when_two_share_a_model():
    t = table([route("new", "chat", [{"targetModels": to("b")}], created="2026-02-01T00:00:00Z"),
               route("old", "chat", [{"targetModels": to("a")}], created="2026-01-01T00:00:00Z")],
              [server("a"), server("b")])
    assert match(t, "chat", "/v1/completions", {}).route.name == "old"


def test_unresolvable_target_falls_through_to_the_next_route():
    t = table([route("old", "chat", [{"targetModels": to("missing")}], created="2026-01-01T00:00:00Z"),
               route("new", "chat", [{"targetModels": to("b")}], created="2026-02-01T00:00:00Z")],
              [server("b")])
    assert match(t, "chat", "/v1/completions", {}).server.name == "b"


def test_targets_resolve_in_the_routes_namespace():
    t = table([route("r", "chat", [{"targetModels": to("s")}], ns="team-a")],
              [server("s", ns="team-b", model="wrong"), server("s", ns="team-a", model="right")])
    assert match(t, "chat", "/v1/completions", {}).upstream_model == "right"


def test_lora_adapter_matches_and_is_not_rewritten():
    t = table([route("r", "base", [{"targetModels": to("s")}], loras=["sql-lora"])], [server("s", model="base-8b")])
    d = match(t, "sql-lora", "/v1/completions", {})
    assert (d.lora, d.upstream_model) == ("sql-lora", "sql-lora")


def test_canary_split_is_within_3_percent_over_10000_requests():
    t = table([route("r", "chat", [{"targetModels": to(("v1", 70), ("v2", 20), ("v3", 10))}])],
              [server("v1"), server("v2"), server("v3")])
    rng = random.Random(7)
    counts = {"v1": 0, "v2": 0, "v3": 0}
    for _ in range(10_000):
        counts[match(t, "chat", "/v1/completions", {}, rng=rng).server.name] += 1
    for name, weight in (("v1", 0.7), ("v2", 0.2), ("v3", 0.1)):
        assert abs(counts[name] / 10_000 - weight) <= 0.03


def test_canary_split_by_distinct_session_keys_is_within_3_percent():
    t = table([route("r", "chat", [{"targetModels": to(("v1", 70), ("v2", 30))}])], [server("v1"), server("v2")])
    n = sum(match(t, "chat", "/v1/completions", {}, split_key=f"user-{i}").server.name == "v1"
            for i in range(10_000))
    assert abs(n / 10_000 - 0.7) <= 0.03


def test_session_key_pins_a_user_to_one_side():
    t = table([route("r", "chat", [{"targetModels": to(("v1", 50), ("v2", 50))}])], [server("v1"), server("v2")])
    sides = {match(t, "chat", "/v1/completions", {}, split_key="alice").server.name for _ in range(200)}
    assert len(sides) == 1


def test_zero_weight_target_never_receives_traffic():
    t = table([route("r", "chat", [{"targetModels": to(("v1", 100), ("v2", 0))}])], [server("v1"), server("v2")])
    rng = random.Random(1)
    assert all(match(t, "chat", "/v1/completions", {}, rng=rng).server.name == "v1" for _ in range(1000))


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"modelName": "m", "rules": []}, "at least one rule"),
    ({"rules": [{"targetModels": to("s")}]}, "modelName is required"),
    ({"modelName": "m", "rules": [{"targetModels": []}]}, "targetModels"),
    ({"modelName": "m", "rules": [{"targetModels": [{"modelServerName": "a", "weight": 10},
                                                     {"modelServerName": "b"}]}]}, "every target"),
    ({"modelName": "m", "rules": [{"targetModels": [{"modelServerName": "a", "weight": 101}]}]}, "0..100"),
    ({"modelName": "m", "rules": [{"modelMatch": {"headers": {"h": {"regex": "("}}},
                                   "targetModels": to("a")}]}, "regex"),
    ({"modelName": "m", "rules": [{"modelMatch": {"headers": {"h": {"exact": "a", "prefix": "b"}}},
                                   "targetModels": to("a")}]}, "exactly one"),
])
def test_invalid_model_route_names_the_field(spec, fragment):
    with pytest.raises(RouteConfigError) as err:
        compile_route({"metadata": {"name": "r"}, "spec": spec})
    assert fragment in str(err.value) and "ModelRoute default/r" in str(err.value)


def test_pd_server_classifies_pod_roles():
    s = compile_server({"metadata": {"name": "pd"}, "spec": {"workloadSelector": {
        "matchLabels": {"app": "x"},
        "pdGroup": {"groupKey": "group", "prefillLabels": {"role": "prefill"}, "decodeLabels": {"role": "decode"}}}}})
    assert s.role_of({"role": "prefill"}) == "prefill"
    assert s.role_of({"role": "decode"}) == "decode"
    assert s.role_of({"role": "other"}) is None


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1m30s", 90), ("100ms", 0.1), (2, 2.0)])
def test_durations_parse_kubernetes_syntax(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


def test_bad_duration_names_where():
    with pytest.raises(RouteConfigError, match="trafficPolicy"):
        compile_server({"metadata": {"name": "s"}, "spec": {"trafficPolicy": {"timeout": "soon"}}})


def test_routes_attached_to_a_gateway_are_skipped_without_gateway_support():
    gw = compile_route({"metadata": {"name": "gw"}, "spec": {
        "modelName": "chat", "parentRefs": [{"name": "my-gateway"}], "rules": [{"targetModels": to("s")}]}})
    with pytest.raises(RequestError):
        match(table([gw], [server("s")]), "chat", "/v1/completions", {})
