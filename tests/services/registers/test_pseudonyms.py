"""Pseudonyms per register: stable within a register, unlinkable across, never keyless."""

import json
import os
import random
import stat
from datetime import date

import pytest

from enjournal.fhir import norwegian_ids as ids
from enjournal.services.registers import pseudonyms as p

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def people(n: int = 200) -> list[str]:
    rng = random.Random(3)
    born = [date(1940 + i % 80, 1 + i % 12, 1 + i % 28) for i in range(n)]
    return sorted({ids.make_fnr(d, rng, female=i % 2 == 0) for i, d in enumerate(born)})


def test_the_same_person_keeps_the_pseudonym_over_time(tmp_path):
    keys = p.make_demo_keys(tmp_path / "keys", ["kpr"])
    first = p.Pseudonymiser("kpr", p.load_key(str(keys), "kpr"))
    # a later delivery: the key read again from where it is held, the same number
    later = p.Pseudonymiser("kpr", p.load_key(str(keys), "kpr"))
    numbers = people()
    assert [first.of(n) for n in numbers] == [later.of(n) for n in numbers]
    assert len({first.of(n) for n in numbers}) == len(numbers)  # one person, one pseudonym
    # running the demo again keeps its keys (pseudonyms stay stable across runs)
    p.make_demo_keys(tmp_path / "keys", ["kpr"])
    assert p.load_key(str(keys), "kpr") == first._key


def test_registers_with_different_keys_give_unrelated_pseudonyms():
    numbers = people()
    kpr, npr = p.Pseudonymiser("kpr", KEY_A), p.Pseudonymiser("npr", KEY_B)
    a, b = [kpr.of(n) for n in numbers], [npr.of(n) for n in numbers]
    assert not set(a) & set(b)
    # no pseudonym tells its number: it is not the number, nor a plain hash of it
    assert not set(a) & set(numbers)
    # unrelated: the bits of the two pseudonyms of a person agree about half the time
    agreement = sum(
        bin(~(int(x, 16) ^ int(y, 16)) & (2**256 - 1)).count("1") for x, y in zip(a, b, strict=True)
    ) / (256 * len(numbers))
    assert 0.45 < agreement < 0.55


def test_a_key_shared_by_mistake_still_keeps_registers_apart():
    numbers = people(50)
    kpr, npr = p.Pseudonymiser("kpr", KEY_A), p.Pseudonymiser("npr", KEY_A)
    assert not {kpr.of(n) for n in numbers} & {npr.of(n) for n in numbers}


def test_no_key_is_an_error_never_a_default(tmp_path):
    with pytest.raises(p.MissingKey, match="ENJOURNAL_REGISTER_KEYS"):
        p.load_key(None, "kpr")
    with pytest.raises(p.MissingKey, match=r"kpr\.key"):
        p.load_key(str(tmp_path), "kpr")  # a key directory without this register's key
    with pytest.raises(p.MissingKey, match="does not exist"):
        p.load_key(str(tmp_path / "nowhere.json"), "kpr")
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(p.MissingKey, match="shorter"):
        p.load_key(str(tmp_path), "short")
    with pytest.raises(p.MissingKey):
        p.Pseudonymiser("kpr", b"")


def test_a_json_key_file_holds_one_key_per_register(tmp_path):
    file = tmp_path / "keys.json"
    file.write_text(json.dumps({"kpr": KEY_A.hex(), "npr": KEY_B.hex()}))
    assert p.load_key(str(file), "kpr") == KEY_A
    assert p.load_key(str(file), "npr") == KEY_B
    with pytest.raises(p.MissingKey, match="'mfr'"):
        p.load_key(str(file), "mfr")


def test_demo_keys_are_private_to_their_owner(tmp_path):
    folder = p.make_demo_keys(tmp_path / "keys", ["kpr", "npr"])
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in ("kpr", "npr"):
        assert stat.S_IMODE(os.stat(folder / f"{name}.key").st_mode) == 0o600
    assert p.load_key(str(folder), "kpr") != p.load_key(str(folder), "npr")


def test_only_a_national_identity_number_is_pseudonymised():
    kpr = p.Pseudonymiser("kpr", KEY_A)
    with pytest.raises(ValueError):
        kpr.of("Ola Nordmann")
    found = p.national_id(
        [{"system": ids.OID_DNR, "value": "41018012345"}, {"system": ids.OID_FNR, "value": "1"}]
    )
    assert found == (ids.OID_FNR, "1")  # the FNR first
    assert p.national_id([{"system": ids.OID_HPR, "value": "1234567"}]) is None


def test_coarsening():
    assert p.coarsen_birth("1953-04-07", "year") == 1953
    assert p.coarsen_birth("1953-04-07", "year-month") == "1953-04"
    assert p.coarsen_birth("1953", "year-month") is None
    assert p.coarsen_birth(None, "year") is None
    with pytest.raises(ValueError):
        p.coarsen_birth("1953-04-07", "day")
    home = {
        "use": "home",
        "line": ["Storgata 1"],
        "extension": [
            {
                "url": p.PROPERTY_INFO,
                "extension": [{"url": "municipality", "valueCoding": {"code": "0301"}}],
            }
        ],
    }
    assert p.municipality([{"use": "work", "district": "4601"}, home]) == "0301"
    assert p.municipality([{"district": "5001"}]) == "5001"
    assert p.municipality([{"district": "Oslo"}]) is None
    row = {"pseudonym": "x", "name": "Ola", "telecom": "+47", "address": "Storgata 1"}
    assert p.without_direct_identifiers(row) == {"pseudonym": "x"}
