"""The enjournal command answers configuration mistakes with a clear message, not a trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "enjournal.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_bad_database_url_is_a_clear_message():
    result = run("migrate", "--database", "foo://x")
    assert result.returncode == 2
    assert "unsupported database URL" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_message():
    result = run("migrate", "--database", "postgresql://postgres@127.0.0.1:1/x")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_serve_refuses_to_start_secured_without_issuers(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENJOURNAL_")}
    result = run("serve", "--database", f"sqlite:///{tmp_path}/db.sqlite", "--port", "1", env=env)
    assert result.returncode == 2
    assert "no token issuer is trusted" in result.stderr


def test_import_skips_a_bad_file_and_says_so(tmp_path):
    good = tmp_path / "good.ndjson"
    good.write_text('{"resourceType": "Patient", "id": "a"}\n')
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"resourceType": "Patient", "id": "b"}\n{not json\n')
    result = run("import", "--database", f"sqlite:///{tmp_path}/db.sqlite", str(good), str(bad))
    assert result.returncode == 1
    assert "line 2" in result.stderr and "1 of 2 files loaded" in result.stderr


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in result.stderr


def test_a_folder_as_the_sqlite_database_is_a_clear_message(tmp_path):
    assert_one_line(run("migrate", "--database", f"sqlite:///{tmp_path}"), "is a folder")


def test_a_missing_folder_is_not_created_outside_the_current_directory(tmp_path):
    target = tmp_path / "missing" / "deeper"
    result = run("migrate", "--database", f"sqlite:///{target}/db.sqlite")
    assert_one_line(result, "does not exist")
    assert not (tmp_path / "missing").exists()


def test_a_missing_folder_below_the_current_directory_is_created(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "enjournal.cli", "migrate", "--database", "sqlite:///data/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "x.db").is_file()


def test_a_file_that_is_not_a_database_is_a_clear_message(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n" * 100)
    result = run("migrate", "--database", f"sqlite:///{tmp_path}/notes.txt")
    assert_one_line(result, "not a database")


def test_every_command_that_opens_a_store_says_so_in_one_line(tmp_path):
    bad = f"sqlite:///{tmp_path}"
    (tmp_path / "x.json").write_text("{}")
    for args in (
        ["import", "--database", bad, str(tmp_path / "x.json")],
        ["jobs", "run", "--database", bad],
        ["terminology", "load", "--database", bad, str(tmp_path / "x.json")],
        ["fest", "load", "--database", bad, str(tmp_path / "x.json")],
    ):
        assert_one_line(run(*args), "is a folder")
    # audit verify reports on standard output with its own exit code (1), no trace either.
    result = run("audit", "verify", "--database", bad)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert "is a folder" in " ".join(result.stdout.split())


def test_an_unknown_postgres_database_is_a_clear_message():
    result = run("migrate", "--database", "postgresql://postgres@127.0.0.1:5432/no_such_db_x")
    assert_one_line(result, "no_such_db_x")
