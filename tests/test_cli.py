"""The enjournal command answers configuration mistakes with a clear message, not a trace."""

from __future__ import annotations

import subprocess
import sys


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
