"""Authentication: API keys or JWTs (HS256/RS256), checked before the body is read.

A request carries `Authorization: Bearer <token>` or the API-key header (default
`x-api-key`). A token equal to a configured API key authenticates as that key's user;
otherwise, when JWT is configured, it must be a JWT signed with the configured secret or
public key (and the issuer/audience, when set), and the user is its `sub` claim (as
Kthena's JWT filter puts `sub` into `user_id`). Anything else is refused with 401 before
any engine is contacted. Keys are kept only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
from pydantic import BaseModel, ConfigDict, Field, model_validator

Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512"]


class AuthError(Exception):
    """Missing or invalid credentials; the message says which without echoing secrets."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class APIKey(_Model):
    user: str = Field(min_length=1)
    key: str | None = Field(None, min_length=8)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_form(self) -> APIKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("set exactly one of key or sha256")
        return self

    @property
    def digest(self) -> str:
        return self.sha256 or hashlib.sha256((self.key or "").encode()).hexdigest()


class JWTConfig(_Model):
    algorithms: list[Algorithm] = Field(default_factory=lambda: list[Algorithm](["HS256"]), min_length=1)
    secret: str | None = None  # HS*
    public_key: str | None = Field(None, alias="publicKey")  # RS*, PEM
    public_key_file: str | None = Field(None, alias="publicKeyFile")
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = Field(0.0, ge=0, alias="leeway")

    @model_validator(mode="after")
    def _keys_for_algorithms(self) -> JWTConfig:
        if any(a.startswith("HS") for a in self.algorithms) and not self.secret:
            raise ValueError("HS* algorithms need secret")
        if any(a.startswith("RS") for a in self.algorithms) and not (self.public_key or self.public_key_file):
            raise ValueError("RS* algorithms need publicKey or publicKeyFile")
        return self


class AuthConfig(_Model):
    api_keys: list[APIKey] = Field(default_factory=list, alias="apiKeys")
    api_key_header: str = Field("x-api-key", alias="apiKeyHeader")
    jwt: JWTConfig | None = None

    @model_validator(mode="after")
    def _something(self) -> AuthConfig:
        if not self.api_keys and self.jwt is None:
            raise ValueError("auth needs apiKeys or jwt")
        return self


@dataclass(frozen=True)
class Identity:
    user: str
    method: str  # "api-key" | "jwt"


class Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.header = config.api_key_header.lower()
        self._keys = {k.digest: k.user for k in config.api_keys}
        self._jwt = config.jwt
        self._hs_key = config.jwt.secret if config.jwt else None
        self._rs_key: str | None = None
        if config.jwt is not None:
            self._rs_key = config.jwt.public_key or (
                Path(config.jwt.public_key_file).read_text() if config.jwt.public_key_file else None)

    def authenticate(self, headers: Mapping[str, str]) -> Identity:
        token = _bearer(headers.get("authorization")) or (headers.get(self.header) or "").strip()
        if not token:
            raise AuthError(f"missing credentials: send 'Authorization: Bearer <token>' or '{self.header}'")
        user = self._keys.get(hashlib.sha256(token.encode()).hexdigest())
        if user is not None:
            return Identity(user, "api-key")
        if self._jwt is None or token.count(".") != 2:
            raise AuthError("invalid API key")
        return Identity(self._verify(token), "jwt")

    def _verify(self, token: str) -> str:
        cfg = self._jwt
        assert cfg is not None
        try:
            alg = jwt.get_unverified_header(token).get("alg", "")
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if alg not in cfg.algorithms:
            raise AuthError(f"invalid token: algorithm {alg!r} is not accepted")
        key = self._hs_key if alg.startswith("HS") else self._rs_key
        if key is None:
            raise AuthError(f"invalid token: no key configured for {alg}")
        options = {"require": ["sub"], "verify_aud": cfg.audience is not None}
        try:
            claims = jwt.decode(token, key, algorithms=[alg], issuer=cfg.issuer, audience=cfg.audience,
                                leeway=cfg.leeway_s, options=options)  # type: ignore[arg-type]
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: 'sub' must be a non-empty string")
        return sub


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
