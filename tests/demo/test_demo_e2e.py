"""The demo as a user meets it: generate and load a small population, serve it with security
on, get tokens for the demo users from `enjournal token`, and use them."""

from __future__ import annotations

import subprocess
import sys

import httpx

from enjournal.fhir.norwegian_ids import OID_FNR
from tests.server.conftest import ServerProcess, free_port


def enjournal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "enjournal.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_serves_with_security_on_and_tokens_for_each_role(tmp_path, monkeypatch):
    data = tmp_path / "data"
    loaded = enjournal("demo", "--data", str(data), "--patients", "12", "--no-serve")
    assert loaded.returncode == 0, loaded.stderr
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    for name, value in {
        "ENJOURNAL_AUTH": "on",
        "ENJOURNAL_OIDC_PROVIDER": "on",
        "ENJOURNAL_OIDC_KEY_FILE": str(data / "oidc-signing-key.json"),
        "ENJOURNAL_PUBLIC_URL": public,
    }.items():
        monkeypatch.setenv(name, value)
    server = ServerProcess(
        f"sqlite:///{data}/enjournal.sqlite", tmp_path / "server.log", port=port
    ).start()
    try:
        tokens = {}
        for who in ("gp", "nurse", "pharmacist", "citizen", "system"):
            result = enjournal("token", "--as", who, "--data", str(data), "--public-url", public)
            assert result.returncode == 0, result.stderr
            tokens[who] = result.stdout.strip()

        def get(who, path):
            return httpx.get(
                f"{public}/fhir/{path}",
                headers={"Authorization": f"Bearer {tokens[who]}"},
                timeout=10,
            )

        assert httpx.get(f"{public}/fhir/Patient", timeout=10).status_code == 401
        assert httpx.get(f"{public}/fhir/metadata", timeout=10).status_code == 200
        own = get("citizen", "Patient").json()["entry"]
        assert len(own) == 1
        me = own[0]["resource"]
        fnr = next(i["value"] for i in me["identifier"] if i["system"] == OID_FNR)
        # The GP has the citizen on her list; the nurse works at the same office.
        for who in ("gp", "nurse"):
            assert get(who, f"Observation?patient={me['id']}").status_code == 200
            assert get(who, f"Patient/{me['id']}").status_code == 200
        # The pharmacist finds the patient by national id and sees prescriptions only.
        found = get("pharmacist", f"Patient?identifier={OID_FNR}|{fnr}").json()
        assert [e["resource"]["id"] for e in found["entry"]] == [me["id"]]
        assert get("pharmacist", f"MedicationRequest?patient={me['id']}").status_code == 200
        assert get("pharmacist", f"Observation?patient={me['id']}").status_code == 403
        assert get("system", "Patient?_count=1").status_code == 200
        log = get("citizen", f"Patient/{me['id']}/$access-log").json()
        readers = {
            a["who"]["identifier"]["value"]
            for e in log["entry"]
            for a in e["resource"]["agent"]
            if a.get("requestor")
        }
        assert len(readers) >= 3  # the GP, the nurse and the pharmacist
    finally:
        server.terminate(10)
    verified = enjournal("audit", "verify", "--database", f"sqlite:///{data}/enjournal.sqlite")
    assert verified.returncode == 0, verified.stdout + verified.stderr
