"""``enjournal register export``: exit codes and messages, and one file set end to end on
SQLite."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import orjson
import pytest

from enjournal.bootstrap import build_platform, close_platform
from enjournal.cli import main
from enjournal.demo.population import generate_population
from enjournal.importer import import_file
from enjournal.services.registers.pseudonyms import make_demo_keys
from enjournal.settings import Settings


@pytest.fixture
def keys(tmp_path, monkeypatch):
    folder = make_demo_keys(tmp_path / "keys", ["kpr"])
    monkeypatch.setenv("ENJOURNAL_REGISTER_KEYS", str(folder))
    return folder


def export(*args: str) -> int:
    return main(["register", "export", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["npr", "--period", "2024"], "unknown register 'npr'; known: kpr"),
        (["kpr", "--period", "2024-13"], "bad period '2024-13': the month must be 01-12"),
        (["kpr", "--period", "last year"], "give a year (2025) or a month (2025-03)"),
    ],
)
def test_bad_input_is_a_message_and_exit_2(keys, capsys, args, message):
    assert export(*args, "--database", "sqlite:///nowhere/never.sqlite") == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not Path("nowhere").exists()  # refused before the database was opened


def test_a_missing_key_is_a_message_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ENJOURNAL_REGISTER_KEYS", raising=False)
    assert export("kpr", "--period", "2024", "--database", f"sqlite:///{tmp_path}/x.sqlite") == 2
    err = capsys.readouterr().err
    assert "no key for the register 'kpr'" in err and "ENJOURNAL_REGISTER_KEYS" in err
    monkeypatch.setenv("ENJOURNAL_REGISTER_KEYS", str(tmp_path))  # a directory without kpr.key
    assert export("kpr", "--period", "2024", "--database", f"sqlite:///{tmp_path}/x.sqlite") == 2
    assert "kpr.key does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.sqlite").exists()


def test_a_file_set_end_to_end_on_sqlite(tmp_path, keys, capsys):
    url = f"sqlite:///{tmp_path}/enjournal.sqlite"
    asyncio.run(_load(url, tmp_path))
    out = tmp_path / "out"
    assert export("kpr", "--period", "2024-06", "--database", url, "--out", str(out)) == 0
    folder = out / "kpr" / "2024-06"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["period"] == "2024-06" and manifest["periodEnd"] == "2024-06-30"
    with open(folder / "kpr-tjenester-2024-06.csv", newline="") as f:
        services = list(csv.DictReader(f))
    assert services and all(int(s["dager_i_perioden"]) <= 30 for s in services)
    assert (folder / "identitet" / "kpr-identitet-2024-06.parquet").exists()
    err = capsys.readouterr().err
    assert "wrote kpr 2024-06" in err and "identity file (for the key holder only)" in err
    assert "Traceback" not in err


async def _load(url: str, folder: Path) -> None:
    platform = await build_platform(Settings(database_url=url, terminology_check=False))
    try:
        bundles = list(generate_population(120, 42))
        for n, bundle in enumerate(bundles):
            path = folder / f"bundle-{n}.json"
            path.write_bytes(orjson.dumps(bundle))
            assert (await import_file(platform.store, path)).error is None
    finally:
        await close_platform(platform)
