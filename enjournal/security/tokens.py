"""Access-token verification: a bearer JWT in, a :class:`Principal` out.

One :class:`IssuerConfig` per trusted issuer (HelseID, ID-porten, the embedded provider, ...).
:meth:`TokenVerifier.verify` checks, in order:

1. the token is a compact JWS of sane size whose header ``alg`` is in the issuer's allow-list
   (asymmetric only, so ``alg: none`` and HS256-signed-with-the-public-key fail);
2. ``iss`` names a configured issuer (read before the signature is checked, only to pick the
   issuer's keys — nothing else is trusted until the signature verifies);
3. the signature, with the issuer's key for the header ``kid`` (a JWKS URL is fetched with
   httpx, cached, and refetched — rate limited — when an unknown ``kid`` shows up);
4. ``iss``, ``aud``, ``exp`` (required), ``nbf`` and ``iat`` with a small leeway;
5. the claims the principal kind needs.

Every failure raises :class:`Unauthorized` with a short message that never echoes the token.

Claims (HelseID: https://github.com/HelseID/HelseID-Public claims_and_scopes; ID-porten):

================================================  =============================================
``helseid://claims/hpr/hpr_number``               personnel: HPR number (required)
``helseid://claims/hpr/profession``               personnel: Volven 9060 code (LE, SP, FA, BA,
                                                  ...).  *enjournal demo convention* — real
                                                  HelseID carries the authorisation in the trust
                                                  framework attestation instead
``helseid://claims/client/claims/orgnr_child``    point of care (preferred for ``org_nr``)
``helseid://claims/client/claims/orgnr_parent``   legal entity (``org_nr`` fallback)
``helseid://claims/client/claims/her_id``         HER-id of the organisation.  *enjournal demo
                                                  convention*
``name`` / ``given_name`` + ``family_name``       display name
``pid`` / ``helseid://claims/identity/pid``       citizen: fødselsnummer / D-nummer (required)
``acr`` / ``.../identity/assurance_level``        citizen: ``idporten-loa-substantial`` /
                                                  ``idporten-loa-high`` (or Level3/Level4, or
                                                  low/substantial/high) → ``assurance``
``client_id`` (or ``azp``)                        every kind (required)
``scope``                                         space-separated string or list → ``scopes``
``patient``                                       SMART launch context → ``Principal.patient``
================================================  =============================================

Kind ``auto`` decides from the claims: an HPR number means personnel, a national id means a
citizen, neither (and no ``sub`` other than the client id) means a system.  Configure the
kind explicitly for a real issuer whose tokens could be ambiguous.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import ECKey, KeySet, RSAKey

from enjournal.fhir.errors import Unauthorized
from enjournal.security import scopes as smart_scopes
from enjournal.security.principal import Principal

log = logging.getLogger("enjournal.security")

IssuedKind = Literal["personnel", "citizen", "system", "auto"]
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "PS256")
_ASYMMETRIC = {
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
}
MAX_TOKEN_BYTES = 16 * 1024

# claim names
HPR_NUMBER = "helseid://claims/hpr/hpr_number"
PROFESSION = "helseid://claims/hpr/profession"  # enjournal demo convention: Volven 9060 code
ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
HER_ID = "helseid://claims/client/claims/her_id"  # enjournal demo convention
HELSEID_PID = "helseid://claims/identity/pid"
ASSURANCE_LEVEL = "helseid://claims/identity/assurance_level"
SECURITY_LEVEL = "helseid://claims/identity/security_level"
PID = "pid"  # ID-porten

_ACR = {
    "idporten-loa-substantial": "substantial",
    "idporten-loa-high": "high",
    "Level3": "substantial",
    "Level4": "high",
    "low": "low",
    "substantial": "substantial",
    "high": "high",
}
_SECURITY_LEVEL = {"2": "low", "3": "substantial", "4": "high"}
_PID = re.compile(r"^\d{11}$")
_TYP = {None, "JWT", "at+jwt", "application/at+jwt"}


@dataclass
class IssuerConfig:
    """One trusted token issuer.

    Give either ``jwks_url`` (fetched over HTTPS, cached ``jwks_cache_seconds``, refetched at
    most every ``jwks_min_refresh_seconds`` when a token names an unknown ``kid``) or ``jwks``
    (an in-process key set: a ``KeySet``, a JWKS dict, or a list of keys).
    """

    issuer: str
    audience: str | Sequence[str]
    jwks_url: str | None = None
    jwks: KeySet | dict | Sequence[Any] | None = None
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    kind: IssuedKind = "auto"
    leeway: int = 30  # seconds of clock skew tolerated on exp / nbf / iat
    jwks_cache_seconds: int = 3600
    jwks_min_refresh_seconds: int = 30

    def __post_init__(self) -> None:
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError(f"issuer {self.issuer}: give exactly one of jwks_url and jwks")
        bad = set(self.algorithms) - _ASYMMETRIC
        if bad or not self.algorithms:
            raise ValueError(f"issuer {self.issuer}: only asymmetric algorithms, not {bad}")
        if isinstance(self.audience, str):
            self.audience = (self.audience,)
        self.algorithms = tuple(self.algorithms)


@dataclass
class _Keys:
    keyset: KeySet | None = None
    fetched: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


VERIFIED_CACHE_SIZE = 20_000


class TokenVerifier:
    """Verifies access tokens from the configured issuers; see the module docstring."""

    def __init__(
        self,
        issuers: Iterable[IssuerConfig],
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.issuers = {i.issuer: i for i in issuers}
        if not self.issuers:
            raise ValueError("at least one issuer is needed")
        self._http = http
        self._own_http = http is None
        self._clock = clock
        self._keys: dict[str, _Keys] = {}
        # Verified tokens -> (Principal, expiry): a client sends the same token many times,
        # and checking an ES256/RS256 signature is most of what authentication costs.
        self._verified: dict[str, tuple[Principal, float]] = {}
        for cfg in self.issuers.values():
            if cfg.jwks is not None:
                self._keys[cfg.issuer] = _Keys(to_keyset(cfg.jwks), fetched=float("inf"))
            else:
                self._keys[cfg.issuer] = _Keys()

    async def aclose(self) -> None:
        if self._http is not None and self._own_http:
            await self._http.aclose()
            self._http = None

    async def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None and hit[1] > self._clock():
            return hit[0]
        claims = await self.verify_claims(token)
        cfg = self.issuers[claims["iss"]]
        principal = principal_from_claims(claims, cfg.kind)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # bounded; re-verifying is only a little slower
        self._verified[token] = (principal, float(claims["exp"]) + cfg.leeway)
        return principal

    async def verify_claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token`` (signature, issuer, audience and times checked)."""
        header, unverified = peek(token)
        iss = unverified.get("iss")
        cfg = self.issuers.get(iss) if isinstance(iss, str) else None
        if cfg is None:
            raise Unauthorized("unknown token issuer")
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise Unauthorized("token algorithm not allowed")
        typ = header.get("typ")
        if not (typ is None or isinstance(typ, str)) or typ not in _TYP:
            raise Unauthorized("not an access token")
        kid = header.get("kid")
        keys = await self._candidate_keys(cfg, kid, alg)
        claims = decode_jws(token, keys, cfg.algorithms)
        validate_claims(
            claims,
            issuer=cfg.issuer,
            audience=cfg.audience,  # type: ignore[arg-type]
            leeway=cfg.leeway,
            now=int(self._clock()),
        )
        return claims

    async def _candidate_keys(self, cfg: IssuerConfig, kid: Any, alg: str) -> list:
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("malformed access token")
        state = self._keys[cfg.issuer]
        now = time.monotonic()
        if cfg.jwks_url and (state.keyset is None or now - state.fetched > cfg.jwks_cache_seconds):
            await self._refresh(cfg, state, force=False)
        keys = select_keys(state.keyset, kid, alg)
        if not keys and cfg.jwks_url:
            await self._refresh(cfg, state, force=True)  # key rotation: an unknown kid
            keys = select_keys(state.keyset, kid, alg)
        if not keys:
            raise Unauthorized("token signature invalid")
        return keys

    async def _refresh(self, cfg: IssuerConfig, state: _Keys, *, force: bool) -> None:
        async with state.lock:
            now = time.monotonic()
            if now - state.fetched < (
                cfg.jwks_min_refresh_seconds if force else cfg.jwks_cache_seconds
            ):
                return  # someone else just refreshed, or rate limited
            state.fetched = now  # also on failure: do not hammer a broken endpoint
            try:
                if self._http is None:
                    self._http = httpx.AsyncClient(timeout=10.0)
                response = await self._http.get(cfg.jwks_url)  # type: ignore[arg-type]
                response.raise_for_status()
                state.keyset = to_keyset(response.json())
            except (httpx.HTTPError, ValueError, TypeError, JoseError) as error:
                log.warning("JWKS fetch from %s failed: %s", cfg.jwks_url, error)
                if state.keyset is None:
                    raise Unauthorized("token issuer keys unavailable") from None


# ------------------------------------------------------------------ helpers (shared with provider)


def to_keyset(value: KeySet | dict | Sequence[Any]) -> KeySet:
    """A public ``KeySet`` from a KeySet, a JWKS dict, or a list of keys / JWK dicts."""
    if isinstance(value, KeySet):
        items = list(value)
    elif isinstance(value, dict):
        items = value.get("keys", [value])
    else:
        items = list(value)
    keys: list[Any] = []  # RSAKey and ECKey
    for item in items:
        data = item.as_dict(private=False) if hasattr(item, "as_dict") else dict(item)
        kty = data.get("kty")
        if kty == "RSA":
            keys.append(RSAKey.import_key(_public_only(data)))
        elif kty == "EC":
            keys.append(ECKey.import_key(_public_only(data)))
        # other key types (oct!) are never signature keys here: skip them
    return KeySet(keys)


def _public_only(data: dict) -> dict:
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    return {k: v for k, v in data.items() if k not in private}


def select_keys(keyset: KeySet | None, kid: str | None, alg: str) -> list:
    if keyset is None:
        return []
    kty = "EC" if alg.startswith("ES") else "RSA" if alg[:2] in ("RS", "PS") else None
    out = []
    for key in keyset:
        if key.key_type != kty:
            continue
        if kid is not None and key.kid != kid:
            continue
        if key.get("use") not in (None, "sig"):
            continue
        if key.alg not in (None, alg):
            continue
        out.append(key)
    return out


def _b64json(segment: str) -> dict:
    padded = segment + "=" * (-len(segment) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def peek(token: Any) -> tuple[dict, dict]:
    """Header and (unverified) payload of a compact JWS, or Unauthorized."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        raise Unauthorized("malformed access token")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise Unauthorized("malformed access token")
    try:
        return _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, UnicodeError):
        raise Unauthorized("malformed access token") from None


def decode_jws(token: str, keys: Sequence[Any], algorithms: Sequence[str]) -> dict[str, Any]:
    """The payload of ``token`` if one of ``keys`` verifies its signature, else Unauthorized."""
    for key in keys:
        try:
            return dict(jwt.decode(token, key, algorithms=list(algorithms)).claims)
        except JoseError:
            continue
        except Exception:  # malformed input must never surface as a 500
            break
    raise Unauthorized("token signature invalid")


def validate_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    audience: Sequence[str],
    leeway: int,
    now: int,
    required: Sequence[str] = (),
) -> None:
    """Registered-claim checks: iss, aud, exp (required), nbf, iat, plus ``required``."""
    essential: dict[str, Any] = {name: {"essential": True} for name in required}
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": list(audience)},
        exp={"essential": True},
        **essential,
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise Unauthorized("access token expired") from None
    except MissingClaimError:
        raise Unauthorized("access token lacks required claims") from None
    except JoseError as error:
        name = getattr(error, "claim", None) or ""
        message = {
            "aud": "token audience mismatch",
            "iss": "unknown token issuer",
            "nbf": "access token not yet valid",
            "iat": "access token not yet valid",
        }.get(name, "invalid access token")
        raise Unauthorized(message) from None


# ------------------------------------------------------------------ claims → Principal


def principal_from_claims(claims: dict[str, Any], kind: IssuedKind = "auto") -> Principal:
    """Map verified claims to a :class:`Principal` (see the table in the module docstring)."""
    if kind == "auto":
        kind = _guess_kind(claims)
    client_id = _str(claims.get("client_id")) or _str(claims.get("azp"))
    if not client_id:
        raise Unauthorized("access token lacks required claims")
    scope = frozenset(smart_scopes.split(claims.get("scope")))
    patient = _str(claims.get("patient"))
    if kind == "system":
        return Principal(
            kind="system",
            subject=_str(claims.get("sub")) or client_id,
            client_id=client_id,
            scopes=scope,
            name=_str(claims.get("client_name")),
            org_nr=_str(claims.get(ORGNR_CHILD)) or _str(claims.get(ORGNR_PARENT)),
            her_id=_str(claims.get(HER_ID)),
            patient=patient,
        )
    subject = _str(claims.get("sub"))
    if not subject:
        raise Unauthorized("access token lacks required claims")
    name = _str(claims.get("name")) or (
        " ".join(p for p in (_str(claims.get("given_name")), _str(claims.get("family_name"))) if p)
        or None
    )
    if kind == "personnel":
        hpr = _str(claims.get(HPR_NUMBER))
        if not hpr or not hpr.isdigit():
            raise Unauthorized("access token lacks required claims")
        return Principal(
            kind="personnel",
            subject=subject,
            client_id=client_id,
            scopes=scope,
            name=name,
            hpr=hpr,
            profession=_str(claims.get(PROFESSION)),
            org_nr=_str(claims.get(ORGNR_CHILD)) or _str(claims.get(ORGNR_PARENT)),
            her_id=_str(claims.get(HER_ID)),
            patient=patient,
        )
    if kind == "citizen":
        pid = _str(claims.get(PID)) or _str(claims.get(HELSEID_PID))
        if not pid or not _PID.match(pid):
            raise Unauthorized("access token lacks required claims")
        return Principal(
            kind="citizen",
            subject=subject,
            client_id=client_id,
            scopes=scope,
            name=name,
            pid=pid,
            assurance=_assurance(claims),
            patient=patient,
        )
    raise Unauthorized("invalid access token")


def _guess_kind(claims: dict[str, Any]) -> IssuedKind:
    if claims.get(HPR_NUMBER) is not None:
        return "personnel"
    if claims.get(PID) is not None or claims.get(HELSEID_PID) is not None:
        return "citizen"
    sub = claims.get("sub")
    if sub is None or sub == claims.get("client_id"):
        return "system"
    raise Unauthorized("access token lacks required claims")


def _assurance(claims: dict[str, Any]) -> str | None:
    for value in (claims.get("acr"), claims.get(ASSURANCE_LEVEL)):
        if isinstance(value, str) and value in _ACR:
            return _ACR[value]
    level = claims.get(SECURITY_LEVEL)
    return _SECURITY_LEVEL.get(str(level)) if level is not None else None


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
