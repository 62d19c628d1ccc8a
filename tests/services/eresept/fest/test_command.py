"""``enjournal fest load FILE``: counts on success, exit 2 and one clear line otherwise."""

from __future__ import annotations

import subprocess
import sys

from enjournal.services.eresept.fest.catalogue import DEMO_FILE
from enjournal.services.eresept.fest.command import load_command
from enjournal.services.eresept.fest.loader import open_catalogue, parse

from .helpers import fest, package, write


async def test_loading_the_demo_prints_the_counts(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    with open_catalogue(DEMO_FILE) as stream:
        parsed = parse(stream)
    parsed.close()
    assert await load_command(url, DEMO_FILE) == 0
    err = capsys.readouterr().err
    products = parsed.packages + parsed.consumables
    assert f"{products} products, {parsed.interactions} interactions" in err
    assert "HentetDato 2024-01-15" in err


async def test_a_missing_file_exits_2_with_a_message(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    assert await load_command(url, tmp_path / "absent.xml") == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "nothing loaded" in err


def test_the_cli_on_good_and_broken_files(tmp_path):
    url = f"sqlite:///{tmp_path}/db.sqlite"

    def run(path):
        return subprocess.run(
            [sys.executable, "-m", "enjournal.cli", "fest", "load", "--database", url, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    good = run(DEMO_FILE)
    assert good.returncode == 0, good.stderr
    assert "products" in good.stderr and "interactions" in good.stderr
    broken = run(write(tmp_path / "b.xml", fest(package(None, "Uten varenr", "N02BE01"))))
    assert broken.returncode == 2
    assert "has no item number" in broken.stderr and "Traceback" not in broken.stderr
    not_xml = run(write(tmp_path / "c.xml", "hello"))
    assert not_xml.returncode == 2 and "not well-formed XML" in not_xml.stderr
