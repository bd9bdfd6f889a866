"""HTTPRoute filters: the pure parts (path replacement, header edits, redirect locations,
compilation and route status) and, end to end, a router in static Gateway mode in front of a
real echo server that reports the request it received (path, Host, headers)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from router.gateway.filters import (
    HeaderEdit,
    PathModifier,
    Redirect,
    compile_filters,
    redirect_location,
    replace_prefix,
)
from router.gateway.harness import echo_server, static_gateway_router
from router.gateway.objects import compile_http_route
from router.gateway.status import desired_http_route_parents
from router.gateway.table import GatewayTable
from router.harness import free_port
from router.routing import RouteConfigError

# ---- pure -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "prefix", "replacement", "expected"), [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "", "/bar"),
    ("/foo/", "/foo", "", "/"),
    ("/foo", "/foo", "", "/"),
    ("/foo/", "/foo", "/", "/"),
    ("/foo", "/foo", "/", "/"),
    ("/v1/completions", "/", "/openai", "/openai/v1/completions"),
])
def test_replace_prefix_match_follows_the_spec_table(path: str, prefix: str, replacement: str, expected: str) -> None:
    assert replace_prefix(path, prefix, replacement) == expected


def test_header_modifier_removes_then_sets_then_appends_to_the_clients_value() -> None:
    headers = {"content-type": "application/json", "x-request-id": "r1", "x-old": "1"}
    edit = HeaderEdit(set=(("x-old", "2"), ("x-new", "a")), add=(("x-tag", "two"),), remove=("x-request-id",))
    edit.apply(headers, CIMultiDict({"X-Tag": "one"}))
    assert headers == {"content-type": "application/json", "x-old": "2", "x-new": "a", "x-tag": "one,two"}


@pytest.mark.parametrize(("redirect", "expected"), [
    (Redirect(scheme="https"), "https://gw.example.com/v1/completions?a=1"),
    (Redirect(scheme="https", port=8443), "https://gw.example.com:8443/v1/completions?a=1"),
    (Redirect(hostname="new.example.com"), "http://new.example.com:8080/v1/completions?a=1"),
    (Redirect(port=80), "http://gw.example.com/v1/completions?a=1"),
    (Redirect(path=PathModifier("ReplaceFullPath", "/moved")), "http://gw.example.com:8080/moved?a=1"),
    (Redirect(path=PathModifier("ReplacePrefixMatch", "/api/v2")), "http://gw.example.com:8080/api/v2/completions?a=1"),
])
def test_redirect_location_derives_scheme_host_port_and_path_as_the_spec_says(redirect: Redirect,
                                                                              expected: str) -> None:
    assert redirect_location(redirect, "http", "gw.example.com", 8080, "/v1/completions", "a=1", "/v1") == expected


def rule_filters(*filters: dict[str, Any], path_type: str = "PathPrefix") -> Any:
    return compile_filters(list(filters), "HTTPRoute ns/r: spec.rules[0]", prefix_match=path_type == "PathPrefix")


def test_unknown_filter_types_are_kept_as_unsupported_not_skipped() -> None:
    compiled = rule_filters({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "x"}}},
                            {"type": "ExtensionRef", "extensionRef": {"group": "g", "kind": "K", "name": "n"}})
    assert compiled.unsupported == ("filters[0]: RequestMirror", "filters[1]: ExtensionRef")


def test_replace_prefix_match_on_a_rule_without_prefix_matches_is_refused_naming_the_field() -> None:
    with pytest.raises(RouteConfigError, match=r"filters\[0\].urlRewrite.path: ReplacePrefixMatch needs"):
        rule_filters({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                    "replacePrefixMatch": "/x"}}}, path_type="Exact")


def test_redirect_and_rewrite_together_are_refused() -> None:
    with pytest.raises(RouteConfigError, match="cannot be combined"):
        rule_filters({"type": "URLRewrite", "urlRewrite": {"hostname": "a"}},
                     {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}})


def test_redirect_status_code_other_than_301_or_302_is_refused() -> None:
    with pytest.raises(RouteConfigError, match=r"requestRedirect.statusCode: expected 301 or 302, got 307"):
        rule_filters({"type": "RequestRedirect", "requestRedirect": {"statusCode": 307}})


def gateway(port: int) -> dict[str, Any]:
    return {"metadata": {"name": "edge", "namespace": "default"},
            "spec": {"gatewayClassName": "kthena-router",
                     "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


def http_route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "llm", "namespace": "default", "generation": 1},
            "spec": {"parentRefs": [{"name": "edge"}], "rules": list(rules)}}


POOL_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "echo"}


def test_route_with_an_unsupported_filter_is_not_accepted_with_reason_unsupported_value() -> None:
    gw = gateway(8081)
    route = http_route({"backendRefs": [POOL_REF], "filters": [{"type": "RequestMirror", "requestMirror": {}}]})
    table = GatewayTable.build([gw], [route], [], inference_extension=True)
    (parent,) = desired_http_route_parents(route, table) or []
    accepted = next(c for c in parent["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")
    assert "rules[0].filters[0]: RequestMirror" in accepted["message"]


def test_filters_on_a_backend_ref_are_unsupported() -> None:
    route = compile_http_route(http_route({"backendRefs": [{**POOL_REF, "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}]}]}))
    assert route.unsupported_filters == ["rules[0].backendRefs[0].filters"]


# ---- end to end -------------------------------------------------------------------------------


@asynccontextmanager
async def filtered_router(*rules: dict[str, Any]) -> AsyncIterator[int]:
    """A router whose Gateway listener (the returned port) serves HTTPRoute `rules` to the echo pool."""
    gw_port = free_port()
    async with echo_server() as address, static_gateway_router({
            "endpoints": [{"name": "echo-0", "address": address, "labels": {"app": "echo"}}],
            "gateway": {
                "enableGatewayAPIInferenceExtension": True,
                "gateways": [gateway(gw_port)],
                "httpRoutes": [http_route(*rules)],
                "inferencePools": [{"metadata": {"name": "echo", "namespace": "default"},
                                    "spec": {"selector": {"matchLabels": {"app": "echo"}},
                                             "targetPorts": [{"number": 8000}]}}]}}):
        yield gw_port


BODY = {"model": "echo", "prompt": "hi", "max_tokens": 1}


async def post(port: int, path: str = "/v1/completions", headers: dict[str, str] | None = None
               ) -> tuple[int, Any, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}{path}", json=BODY,
                                                     headers=headers or {}, allow_redirects=False) as r:
        return r.status, await r.json(content_type=None) if r.status < 300 or r.status >= 400 else None, \
            CIMultiDict(r.headers)


def with_filters(*filters: dict[str, Any], path: str = "/v1") -> dict[str, Any]:
    return {"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [POOL_REF],
            "filters": list(filters)}


async def test_request_header_modifier_edits_the_headers_the_engine_receives() -> None:
    async with filtered_router(with_filters({"type": "RequestHeaderModifier", "requestHeaderModifier": {
            "set": [{"name": "X-Tenant", "value": "blue"}], "add": [{"name": "X-Tag", "value": "gw"}],
            "remove": ["x-request-id"]}})) as port:
        status, body, _ = await post(port, headers={"x-tag": "client", "x-request-id": "r1"})
    assert status == 200
    got = body["headers"]
    assert (got["x-tenant"], got["x-tag"], "x-request-id" in got) == ("blue", "client,gw", False)


async def test_url_rewrite_replaces_the_matched_prefix_and_the_host() -> None:
    async with filtered_router(with_filters({"type": "URLRewrite", "urlRewrite": {
            "hostname": "engine.internal", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/openai/v1"}}}
            )) as port:
        status, body, _ = await post(port)
    assert (status, body["path"], body["headers"]["host"]) == (200, "/openai/v1/completions", "engine.internal")


async def test_url_rewrite_replace_full_path() -> None:
    async with filtered_router(with_filters({"type": "URLRewrite", "urlRewrite": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/v1/chat/completions"}}})) as port:
        _status, body, _ = await post(port)
    assert body["path"] == "/v1/chat/completions"


async def test_response_header_modifier_edits_what_the_client_receives() -> None:
    async with filtered_router(with_filters({"type": "ResponseHeaderModifier", "responseHeaderModifier": {
            "set": [{"name": "X-Served-By", "value": "caldera"}], "remove": ["x-caldera-pod"]}})) as port:
        status, _body, headers = await post(port)
    assert (status, headers.get("x-served-by"), "x-caldera-pod" in headers) == (200, "caldera", False)


async def test_request_redirect_answers_302_with_the_new_location() -> None:
    async with filtered_router({"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}], "filters": [
            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "secure.example.com"}}]}
            ) as port:
        status, _body, headers = await post(port, "/v1/completions?x=1")
    assert (status, headers["location"]) == (302, "https://secure.example.com/v1/completions?x=1")


async def test_request_redirect_with_status_301_and_a_replaced_path() -> None:
    async with filtered_router({"filters": [{"type": "RequestRedirect", "requestRedirect": {
            "statusCode": 301, "path": {"type": "ReplaceFullPath", "replaceFullPath": "/v2/completions"}}}]}) as port:
        status, _body, headers = await post(port)
    assert (status, headers["location"]) == (301, f"http://127.0.0.1:{port}/v2/completions")


async def test_a_rule_with_an_unsupported_filter_answers_500_naming_it() -> None:
    async with filtered_router(with_filters({"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "mirror", "port": 80}}})) as port:
        status, body, _ = await post(port)
    assert (status, body["error"]["code"]) == (500, "unsupported_filter")
    assert "filters[0]: RequestMirror" in body["error"]["message"]


async def test_request_redirect_also_answers_paths_the_router_does_not_serve() -> None:
    async with filtered_router({"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}
                               ) as port, aiohttp.ClientSession() as s, s.get(
            f"http://127.0.0.1:{port}/docs/index.html", allow_redirects=False) as r:
        assert (r.status, r.headers["location"]) == (302, "https://127.0.0.1/docs/index.html")


async def test_paths_the_router_does_not_serve_stay_404_without_a_redirect_rule() -> None:
    async with filtered_router(with_filters()) as port, aiohttp.ClientSession() as s, s.get(
            f"http://127.0.0.1:{port}/docs/index.html", allow_redirects=False) as r:
        assert r.status == 404


def test_a_request_header_modifier_of_framing_headers_is_unsupported_not_applied() -> None:
    compiled = rule_filters({"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "Content-Length", "value": "0"}], "remove": ["transfer-encoding"]}})
    assert compiled.request_headers is None
    assert compiled.unsupported == ("filters[0]: RequestHeaderModifier of content-length, transfer-encoding",)


@pytest.mark.parametrize(("filters", "field"), [
    ({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a b"}}},
     "urlRewrite.path"),
    ({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a\r\nX: y"}}},
     "urlRewrite.path"),
    ({"type": "URLRewrite", "urlRewrite": {"hostname": "evil\r\nx: y"}}, "urlRewrite.hostname"),
    ({"type": "RequestRedirect", "requestRedirect": {"hostname": "a b.example.com"}}, "requestRedirect.hostname"),
])
def test_rewrite_and_redirect_values_that_would_break_the_request_are_refused(filters: dict[str, Any],
                                                                              field: str) -> None:
    with pytest.raises(RouteConfigError, match=rf"filters\[0\]\.{field}"):
        rule_filters(filters)


def test_a_header_name_that_is_not_an_http_token_is_refused() -> None:
    with pytest.raises(RouteConfigError, match=r"requestHeaderModifier.set\[0\]: invalid header name"):
        rule_filters({"type": "RequestHeaderModifier", "requestHeaderModifier": {
            "set": [{"name": "x-a: b\r\nx-c", "value": "d"}]}})
