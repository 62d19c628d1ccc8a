"""Logging in to a web site: OpenID Connect authorization code flow with PKCE (RFC 7636)
against the configured issuer, refreshing and revoking the tokens.

A site is a public client: it proves the code is its own with the PKCE verifier kept in the
pre-login session, checks ``state`` against that session (``site.py``), and takes the tokens
only for the kinds of user it serves (``verified``).  The embedded demo provider is called
in process (no network round trip to itself); any other issuer over HTTPS, found through
its discovery document.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from enjournal.fhir.errors import Unauthorized
from enjournal.security.principal import Principal


class LoginFailed(Exception):
    """The login did not complete (refused, tampered with, expired): start again."""


@dataclass
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: float


@dataclass
class LoginStart:
    url: str  # where to send the browser
    state: str
    nonce: str
    verifier: str


class OidcClient:
    """The site as the public client ``client_id`` of ``issuer``, asking for ``scopes``."""

    def __init__(
        self,
        issuer: str,
        redirect_uri: str,
        audience: str,
        client_id: str,
        scopes: str,
        transport=None,
    ):
        self.issuer = issuer.rstrip("/")
        self.redirect_uri = redirect_uri
        self.audience = audience  # the FHIR base (SMART ``aud``)
        self.client_id, self.scopes = client_id, scopes
        self._transport = transport  # in process for the embedded provider
        self._config: dict[str, Any] | None = None

    async def start(self) -> LoginStart:
        config = await self._discovery()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = pkce_verifier()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scopes,
            "state": state,
            "nonce": nonce,
            "aud": self.audience,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        return LoginStart(
            f"{config['authorization_endpoint']}?{urlencode(query)}", state, nonce, verifier
        )

    async def exchange(self, code: str, verifier: str) -> Tokens:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "code_verifier": verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> Tokens:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self._token({**form, "client_id": self.client_id})

    async def revoke(self, refresh_token: str | None) -> None:
        config = await self._discovery()
        endpoint = config.get("revocation_endpoint")
        if not refresh_token or not endpoint:
            return
        form = {"token": refresh_token, "client_id": self.client_id}
        async with self._client() as client:
            await client.post(endpoint, data=form)

    async def _token(self, form: dict[str, str]) -> Tokens:
        config = await self._discovery()
        async with self._client() as client:
            answer = await client.post(config["token_endpoint"], data=form)
        if answer.status_code != 200:
            raise LoginFailed(f"the token endpoint refused: {answer.status_code}")
        body = answer.json()
        expires = time.time() + float(body.get("expires_in", 300))
        return Tokens(body["access_token"], body.get("refresh_token"), expires)

    async def _discovery(self) -> dict[str, Any]:
        if self._config is None:
            async with self._client() as client:
                answer = await client.get(f"{self.issuer}/.well-known/openid-configuration")
            if answer.status_code != 200:
                raise LoginFailed("the issuer's discovery document is unavailable")
            self._config = answer.json()
        return self._config

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, timeout=10.0)


def in_process(prefix: str, app) -> httpx.ASGITransport:
    """A transport that hands requests to ``app`` (the embedded provider's router, mounted
    at ``prefix``) without a network round trip."""

    async def mounted(scope, receive, send):
        path = scope["path"].removeprefix(prefix) or "/"
        await app({**scope, "path": path, "raw_path": path.encode()}, receive, send)

    return httpx.ASGITransport(app=mounted)


async def verified(verifier, tokens: Tokens, kinds: tuple[str, ...]) -> Principal:
    """The verified principal of ``tokens`` (``verifier``: the platform's token verifier),
    if it is of one of ``kinds`` (``citizen``, ``personnel``)."""
    try:
        principal = await verifier.verify(tokens.access_token)
    except Unauthorized as error:
        raise LoginFailed(f"the access token is not valid: {error.message}") from None
    if principal.kind not in kinds:
        raise LoginFailed(f"only {' or '.join(kinds)} users log in here")
    return principal


def pkce_verifier() -> str:
    """A PKCE code verifier: 64 characters of 48 random bytes (RFC 7636 4.1: 43 to 128)."""
    return secrets.token_urlsafe(48)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: BASE64URL(SHA256(verifier)), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
