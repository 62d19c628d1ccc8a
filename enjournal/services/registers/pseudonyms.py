"""Keyed pseudonyms per register, and the coarsening of what else could identify a person.

A register's feed carries, instead of the national identity number (fødselsnummer or
D-nummer, domain.md 1.1), ``HMAC-SHA-256(key of that register, "<register>:<number>")``: the
same person has the same pseudonym in every delivery to one register (linkable over time), and an
unrelated one in each other register (not linkable across registers without the key
holder).  The keys are held outside the data store: ``ENJOURNAL_REGISTER_KEYS`` names a
directory with one ``<register>.key`` file each (64 hex digits), or a JSON file
``{"<register>": "<hex>"}``.  A missing key is an error (:class:`MissingKey`), never a
default key: a guessable key would make every pseudonym a lookup table of numbers.  The
demo makes its own keys (:func:`make_demo_keys`), readable only by their owner (0600).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR

KEY_BYTES = 32  # 256 bits: the HMAC-SHA-256 block's worth of secret
NATIONAL_IDS = (OID_FNR, OID_DNR)  # FNR first: a person with both is known by the FNR
PROPERTY_INFO = "http://hl7.no/fhir/StructureDefinition/no-basis-propertyinformation"
DISTRICT_CODE = re.compile(r"^\d{4}$")
# Columns a feed's activity file never carries (names, contact details, addresses).
DIRECT_IDENTIFIERS = frozenset(
    {"name", "family", "given", "telecom", "phone", "email", "address", "line", "postal_code"}
)


class MissingKey(LookupError):
    """No key for a register: the feed cannot be pseudonymised, so it is not made."""


def load_key(setting: str | None, register: str) -> bytes:
    """The key of ``register`` from the ``register_keys`` setting (a directory or a JSON
    file); :class:`MissingKey` with the reason when there is none or it is too short."""
    if not setting:
        raise MissingKey(
            f"no key for the register {register!r}: set ENJOURNAL_REGISTER_KEYS to a key "
            "directory or file (docs/registers.md)"
        )
    path = Path(setting)
    text = _key_text(path, register)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise MissingKey(f"the key of {register!r} in {path} is not hexadecimal") from None
    if len(key) < KEY_BYTES:
        raise MissingKey(f"the key of {register!r} in {path} is shorter than {KEY_BYTES} bytes")
    return key


def _key_text(path: Path, register: str) -> str:
    if path.is_dir():
        file = path / f"{register}.key"
        if not file.is_file():
            raise MissingKey(f"no key for the register {register!r}: {file} does not exist")
        return file.read_text()
    if not path.is_file():
        raise MissingKey(f"no key for the register {register!r}: {path} does not exist")
    try:
        keys = json.loads(path.read_text())
    except ValueError:
        raise MissingKey(f"{path} is neither a key directory nor a JSON key file") from None
    if not isinstance(keys, dict) or not isinstance(keys.get(register), str):
        raise MissingKey(f"no key for the register {register!r} in {path}")
    return keys[register]


def make_demo_keys(directory: str | Path, registers: Iterable[str]) -> Path:
    """A fresh random key for each register that has none in ``directory`` (created 0700),
    each file 0600; for the demo only.  Returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for register in registers:
        file = directory / f"{register}.key"
        if file.exists():
            continue  # the same key as last time: pseudonyms stay stable across runs
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(KEY_BYTES) + "\n")
    return directory


class Pseudonymiser:
    """One register's pseudonyms: ``of(number)`` is stable for a key, unrelated across keys."""

    def __init__(self, register: str, key: bytes):
        if len(key) < KEY_BYTES:
            raise MissingKey(f"the key of {register!r} is shorter than {KEY_BYTES} bytes")
        self.register = register
        self._key = key

    def of(self, national_id: str) -> str:
        number = national_id.strip()
        if not number.isdigit() or len(number) != 11:
            raise ValueError("a pseudonym is made of an 11-digit national identity number")
        # the register's name goes in too: a key given to two registers by mistake still
        # gives each its own pseudonyms
        message = f"{self.register}:{number}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


# ---- coarsening ------------------------------------------------------------------------


def national_id(identifiers: Iterable[dict] | None) -> tuple[str, str] | None:
    """(system, number) of a person's FNR, else D-nummer, else None."""
    found = {i.get("system"): i.get("value") for i in identifiers or () if i.get("value")}
    for system in NATIONAL_IDS:
        if found.get(system):
            return system, str(found[system])
    return None


def birth_year(birth_date: str | None) -> int | None:
    """1953-04-07 -> 1953 (None for none or a malformed date)."""
    if not birth_date or not re.match(r"^\d{4}", birth_date):
        return None
    return int(birth_date[:4])


def birth_month(birth_date: str | None) -> str | None:
    """1953-04-07 -> "1953-04" (a date with only a year gives None)."""
    if not birth_date or not re.match(r"^\d{4}-\d{2}", birth_date):
        return None
    return birth_date[:7]


def coarsen_birth(birth_date: str | None, level: str) -> int | str | None:
    """The birth date at ``level``: "year" or "year-month"."""
    if level == "year":
        return birth_year(birth_date)
    if level == "year-month":
        return birth_month(birth_date)
    raise ValueError(f"unknown coarsening of a birth date: {level!r}")


def municipality(addresses: Iterable[dict] | None) -> str | None:
    """The municipality number (kommunenummer) of a person's home address: the no-basis
    property information's ``municipality`` coding, else a 4-digit ``district``."""
    ordered = sorted(addresses or (), key=lambda a: a.get("use") != "home")
    for address in ordered:
        for ext in address.get("extension") or ():
            if ext.get("url") != PROPERTY_INFO:
                continue
            for part in ext.get("extension") or ():
                code = (part.get("valueCoding") or {}).get("code")
                if part.get("url") == "municipality" and code:
                    return str(code)
        district = str(address.get("district") or "")
        if DISTRICT_CODE.match(district):
            return district
    return None


def without_direct_identifiers(row: dict) -> dict:
    """``row`` less names, contact details and addresses (whatever a view selected)."""
    return {k: v for k, v in row.items() if k not in DIRECT_IDENTIFIERS}
