"""Authentication: API keys and JWTs; refused requests never reach an engine."""

import hashlib
import time

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from router.harness import route, server
from router.limits.auth import AuthConfig, Authenticator, AuthError
from router.resilience.harness import engine_metric

SECRET = "test-secret-that-is-long-enough-for-hs256"
ROUTES = {"modelServers": [server("m", model="base-model")],
          "modelRoutes": [route("m", "m", [{"targetModels": [{"modelServerName": "m"}]}])]}
BODY = {"model": "m", "prompt": "hello", "max_tokens": 2}


@pytest.fixture(scope="module")
def rsa_keys():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, public


def _auth(**cfg):
    return Authenticator(AuthConfig.model_validate(cfg))


def _hs(claims, secret=SECRET):
    return jwt.encode(claims, secret, algorithm="HS256")


def test_api_key_authenticates_as_its_user():
    a = _auth(apiKeys=[{"key": "sk-alice-000", "user": "alice"}])
    assert a.authenticate({"authorization": "Bearer sk-alice-000"}).user == "alice"
    assert a.authenticate({"x-api-key": "sk-alice-000"}).user == "alice"


def test_api_keys_may_be_configured_as_digests():
    a = _auth(apiKeys=[{"sha256": hashlib.sha256(b"sk-bob-0000").hexdigest(), "user": "bob"}])
    assert a.authenticate({"authorization": "Bearer sk-bob-0000"}).user == "bob"


def test_missing_credentials_are_refused_naming_the_headers():
    with pytest.raises(AuthError, match="x-api-key"):
        _auth(apiKeys=[{"key": "sk-alice-000", "user": "alice"}]).authenticate({})


def test_hs256_jwt_authenticates_as_its_subject():
    a = _auth(jwt={"secret": SECRET})
    assert a.authenticate({"authorization": f"Bearer {_hs({'sub': 'carol'})}"}).user == "carol"


def test_jwt_signed_with_another_secret_is_refused():
    with pytest.raises(AuthError, match="invalid token"):
        _auth(jwt={"secret": SECRET}).authenticate({"authorization": f"Bearer {_hs({'sub': 'x'}, 'other' * 8)}"})


def test_expired_jwt_is_refused():
    token = _hs({"sub": "carol", "exp": int(time.time()) - 60})
    with pytest.raises(AuthError, match="expired"):
        _auth(jwt={"secret": SECRET}).authenticate({"authorization": f"Bearer {token}"})


def test_jwt_without_sub_is_refused():
    with pytest.raises(AuthError, match="sub"):
        _auth(jwt={"secret": SECRET}).authenticate({"authorization": f"Bearer {_hs({'name': 'x'})}"})


def test_rs256_jwt_is_verified_with_the_public_key(rsa_keys):
    key, public = rsa_keys
    token = jwt.encode({"sub": "dave", "iss": "idp", "aud": "caldera"}, key, algorithm="RS256")
    a = _auth(jwt={"algorithms": ["RS256"], "publicKey": public, "issuer": "idp", "audience": "caldera"})
    assert a.authenticate({"authorization": f"Bearer {token}"}).user == "dave"


def test_algorithm_not_configured_is_refused(rsa_keys):
    key, _ = rsa_keys
    token = jwt.encode({"sub": "dave"}, key, algorithm="RS256")
    with pytest.raises(AuthError, match="not accepted"):
        _auth(jwt={"secret": SECRET}).authenticate({"authorization": f"Bearer {token}"})


def test_auth_config_needs_keys_or_jwt():
    with pytest.raises(ValueError, match="apiKeys or jwt"):
        AuthConfig.model_validate({})


@pytest.mark.slow
async def test_request_without_valid_credentials_gets_401_and_never_reaches_an_engine(engines, start_router):
    eng = await engines.start("e", labels={"app": "m"})
    r = await start_router(**ROUTES, endpoints=[eng.endpoint()], kvEvents=False,
                           auth={"apiKeys": [{"key": "sk-alice-000", "user": "alice"}], "jwt": {"secret": SECRET}})
    for headers in ({}, {"authorization": "Bearer sk-wrong-000"}, {"x-api-key": "nope"},
                    {"authorization": f"Bearer {_hs({'sub': 'x'}, 'other' * 8)}"}):
        status, body, resp_headers = await r.complete(BODY, headers)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        assert resp_headers["WWW-Authenticate"].startswith("Bearer")
    async with aiohttp.ClientSession() as s:
        assert await engine_metric(s, eng.url, "vllm:request_success_total") == 0
        assert await engine_metric(s, eng.url, "vllm:prompt_tokens_total") == 0
        ok, _, _ = await r.complete(BODY, {"authorization": f"Bearer {_hs({'sub': 'carol'})}"})
        assert ok == 200 and await engine_metric(s, eng.url, "vllm:request_success_total") == 1
