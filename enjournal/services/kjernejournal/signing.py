"""Signing a FHIR document Bundle so a receiver can verify who made it and that it is intact.

Bundle.signature (http://hl7.org/fhir/R4/datatypes.html#Signature, and
http://hl7.org/fhir/R4/signatures.html): ``sigFormat`` application/jose, ``type`` author's
signature (urn:iso-astm:E1762-95:2013 1.2.840.10065.1.12.1.1), ``data`` the base64 of a JWS
(RFC 7515) with a *detached* payload (RFC 7515 appendix F): the payload is the canonical
Bundle without its ``signature``: JSON with object keys sorted, no whitespace, strings and
numbers exactly as in the document (``canonical``).  The key is the server's
document-signing key (EC P-256, ES256), published by ``$document-signing-key`` as a JWKS.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from enjournal.fhir import jsonio
from enjournal.security.keys import SigningKey, public_jwks, signing_alg

SIGNATURE_TYPE = {
    "system": "urn:iso-astm:E1762-95:2013",
    "code": "1.2.840.10065.1.12.1.1",
    "display": "Author's Signature",
}


def canonical(bundle: dict) -> bytes:
    """The bytes that are signed: the Bundle without ``signature``, keys sorted."""
    unsigned = {k: v for k, v in bundle.items() if k != "signature"}
    return orjson.dumps(unsigned, default=jsonio._default, option=orjson.OPT_SORT_KEYS)


#: joserfc refuses payloads over 128 000 bytes by default; a 500-resource document is ~300 KB.
MAX_DOCUMENT = 64 * 1024 * 1024


def _registry() -> JWSRegistry:
    registry = JWSRegistry(algorithms=["ES256", "RS256"])
    registry.max_payload_length = MAX_DOCUMENT
    return registry


_SIGNER = _registry()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> bytes:
    # One pass fewer over the ~400 KB than base64.urlsafe_b64encode (+ the rstrip copy
    # only when there is padding).
    out = binascii.b2a_base64(data, newline=False).translate(_URLSAFE)
    return out.rstrip(b"=") if out.endswith(b"=") else out


def signature_of(payload: bytes, key: SigningKey, when: str, who: dict) -> dict:
    """The Bundle.signature element over ``payload`` (the canonical bytes of the Bundle).

    The JWS signing input (RFC 7515 5.1) is built here rather than by
    ``jws.serialize_compact``, which would also join and hand back the ~400 KB encoded
    payload only for it to be cut out again (detached)."""
    alg = signing_alg(key)
    header = orjson.dumps({"alg": alg, "kid": key.kid, "typ": "JOSE"})
    head = _b64url(header)
    signature = _SIGNER.get_alg(alg).sign(head + b"." + _b64url(payload), key)
    detached = (head + b".." + _b64url(signature)).decode("ascii")
    return {
        "type": [SIGNATURE_TYPE],
        "when": when,
        "who": who,
        "sigFormat": "application/jose",
        "data": base64.b64encode(detached.encode("ascii")).decode("ascii"),
    }


def sign(bundle: dict, key: SigningKey, when: str, who: dict) -> dict:
    """Add Bundle.signature (in place) and return the bundle."""
    bundle["signature"] = signature_of(canonical(bundle), key, when, who)
    return bundle


def verify(bundle: dict, jwks: dict) -> bool:
    """Whether ``bundle`` carries a valid signature by one of the keys in ``jwks``
    (e.g. from ``$document-signing-key``).  A receiver parses the document with decimals
    kept as written (``enjournal.fhir.jsonio.loads``) before calling this."""
    signature = bundle.get("signature") or {}
    if signature.get("sigFormat") != "application/jose" or not signature.get("data"):
        return False
    try:
        detached = base64.b64decode(signature["data"], validate=True).decode("ascii")
        head, empty, sig = detached.split(".")
    except (ValueError, UnicodeDecodeError):
        return False
    if empty:
        return False
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        jws.deserialize_compact(
            f"{head}..{sig}", keys, registry=_registry(), payload=canonical(bundle)
        )
    except (JoseError, ValueError, KeyError):
        return False
    return True


def jwks_of(key: SigningKey) -> dict[str, Any]:
    return public_jwks(key)
