"""The demo as a user meets it: generate and load a small population, serve it with security
on, get tokens for the demo users from `enjournal token`, and use them."""

from __future__ import annotations

import subprocess
import sys

import httpx

from enjournal.fhir.norwegian_ids import OID_FNR
from enjournal.security.tokens import HER_ID
from tests.server.conftest import ServerProcess, free_port


def enjournal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "enjournal.cli", *args], capture_output=True, text=True, timeout=300
    )


def token_claims(token: str) -> dict:
    import base64
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def part(message: dict, name: str):
    """A message summary's part's value (the type's code for ``type``)."""
    for p in message["part"]:
        if p["name"] == name:
            value = next(v for k, v in p.items() if k.startswith("value") or k == "part")
            return value["code"] if isinstance(value, dict) else value
    return None


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
        for who in ("gp", "nurse", "pharmacist", "citizen", "system", "hospital"):
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
        # The demo's messages: the trust received the GP office's referrals and answered them
        # automatically; the office has the trust's discharge summaries waiting for it.
        trust = token_claims(tokens["hospital"])[HER_ID]
        inbox = get("hospital", f"$messages?party={trust}&box=inbox").json()["parameter"]
        referrals = [m for m in inbox if part(m, "type") == "HENVIS"]
        assert len(referrals) == 2 and all(part(m, "receipt") for m in referrals)
        office = token_claims(tokens["gp"])[HER_ID]
        waiting = get("gp", f"$messages?party={office}&box=inbox").json()["parameter"]
        received = sorted(part(m, "type") for m in waiting)
        assert received == ["APPREC", "APPREC", "DIALOG_FORESPORSEL", "EPIKRISE", "EPIKRISE"]
    finally:
        server.terminate(10)
    verified = enjournal("audit", "verify", "--database", f"sqlite:///{data}/enjournal.sqlite")
    assert verified.returncode == 0, verified.stdout + verified.stderr
