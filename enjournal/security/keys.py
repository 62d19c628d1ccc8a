"""The embedded provider's signing key: a private JWK kept in a file only the owner can read.

``load_or_create(path)`` reads the key, or generates a fresh random one (EC P-256 by default,
or RSA 2048) with ``kid`` = its RFC 7638 thumbprint, and writes it with mode 0600.  Creation
is atomic (written to a temporary file, then hard-linked into place), so two processes
starting at once end up with the same key.  There is never a fixed key in the code.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from joserfc.jwk import ECKey, KeySet, RSAKey

log = logging.getLogger("enjournal.security")

SigningKey = ECKey | RSAKey
KeyType = Literal["EC", "RSA"]


def generate(kty: KeyType = "EC") -> SigningKey:
    """A new random private signing key with ``kid``, ``use`` and ``alg`` set."""
    if kty == "EC":
        key: SigningKey = ECKey.generate_key("P-256", private=True)
    elif kty == "RSA":
        key = RSAKey.generate_key(2048, private=True)
    else:
        raise ValueError("key type must be EC or RSA")
    data = key.as_dict(private=True)
    data.update(kid=key.thumbprint(), use="sig", alg=signing_alg(key))
    return _import(data)


def load_or_create(path: str | os.PathLike, kty: KeyType = "EC") -> SigningKey:
    """The private key in ``path``, created (mode 0600) if the file does not exist."""
    path = Path(path)
    if not path.exists():
        _create(path, generate(kty))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("signing key file %s is readable by others (mode %o); fixing", path, mode)
        os.chmod(path, 0o600)
    try:
        key = _import(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path} does not hold a usable private JWK") from error
    if not key.is_private:
        raise ValueError(f"{path} holds a public key; the provider needs the private key")
    return key


def signing_alg(key: SigningKey) -> str:
    """The JWS algorithm the provider signs with: ES256 for P-256, RS256 for RSA."""
    if isinstance(key, ECKey):
        if key.get("crv") != "P-256":
            raise ValueError("EC signing keys must be P-256")
        return "ES256"
    return "RS256"


def public_jwk(key: SigningKey) -> dict:
    return dict(key.as_dict(private=False))


def public_jwks(*keys: SigningKey) -> dict:
    """The public key set, as served at ``/jwks``."""
    return {"keys": [public_jwk(k) for k in keys]}


def public_keyset(*keys: SigningKey) -> KeySet:
    return KeySet.import_key_set(public_jwks(*keys))  # type: ignore[arg-type]


def _import(data: dict) -> SigningKey:
    kty = data.get("kty")
    if kty == "EC":
        return ECKey.import_key(data)
    if kty == "RSA":
        return RSAKey.import_key(data)
    raise ValueError("only EC and RSA signing keys are supported")


def _create(path: Path, key: SigningKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(key.as_dict(private=True), f)
            f.write("\n")
        try:
            os.link(tmp, path)  # fails if another process created it first: keep theirs
            log.info("created signing key %s (kid %s)", path, key.kid)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
