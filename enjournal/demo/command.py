"""``enjournal demo``: generate a synthetic Norwegian population, load it, serve it.

Everything lives under ``--data``: the generated Bundles in ``bundles/`` and the embedded
SQLite database ``enjournal.sqlite``.  Running it again with the same seed and size reuses
what is there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
from pathlib import Path

from rich.console import Console


async def _migrate_and_load_fest(url: str) -> int:
    """``enjournal migrate`` (schema and shipped code lists), then the demo drug catalogue;
    returns its number of entries."""
    from enjournal.bootstrap import build_platform, close_platform, migrate_platform
    from enjournal.services.eresept.fest.catalogue import DEMO_FILE, load_file
    from enjournal.settings import Settings

    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        await migrate_platform(platform)
        return await load_file(platform.store, DEMO_FILE)
    finally:
        await close_platform(platform)


async def _load_portal(url: str, patients: int, seed: int) -> tuple[int, int]:
    """The citizen portal's demo world and the GPs' slots from today (``portal.py``): what
    is missing, so a reused database gains the coming days' slots and keeps its bookings;
    then the portal citizens' e-prescriptions (``prescriptions.py``), for those who have
    none.  Returns how many resources and prescriptions were added."""
    from datetime import date

    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.demo.portal import load_portal
    from enjournal.demo.prescriptions import load_prescriptions
    from enjournal.settings import Settings

    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        added = await load_portal(platform.store, patients, seed, date.today())
        return added, await load_prescriptions(platform)
    finally:
        await close_platform(platform)


async def _load_messages(url: str) -> int:
    """The demo's messages between the GP office, a health trust and a pharmacy
    (services/messaging/samples.py), delivered and answered where answers are automatic."""
    import time

    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.services.messaging.hub import hub_of
    from enjournal.services.messaging.samples import demo_messages
    from enjournal.settings import Settings

    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        sent = await demo_messages(platform, int(time.time() * 1000))
        await hub_of(platform).settle()
        await hub_of(platform).close()
        return sent
    finally:
        await close_platform(platform)


async def _load_homecare(url: str, history: bool) -> tuple[int, int]:
    """The home follow-up's world (``homecare.py``), then, the first time, a week of
    readings from the simulated devices through the hub.  (resources added, readings)"""
    from datetime import UTC, datetime

    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.demo.homecare import load_homecare
    from enjournal.security.setup import worker_security
    from enjournal.services.velferdsteknologi.simulator import Simulator
    from enjournal.settings import Settings

    settings = Settings(database_url=url)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security), migrate=False)
    await security.start(platform.store)
    try:
        now = datetime.now(UTC)
        added, _patients = await load_homecare(platform.store, now)
        readings = await Simulator(platform).history(now) if added and history else 0
        return added, readings
    finally:
        await security.stop()
        await close_platform(platform)


def run_demo(args: argparse.Namespace) -> int:
    from enjournal.demo.population import write_bundles
    from enjournal.importer import run_import

    console = Console(stderr=True)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    database = data / "enjournal.sqlite"
    url = f"sqlite:///{database}"
    stamp = data / "demo.json"
    wanted = {"patients": args.patients, "seed": args.seed}
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        for leftover in [database, Path(f"{database}-wal"), Path(f"{database}-shm")]:
            leftover.unlink(missing_ok=True)
        bundles = data / "bundles"
        for old in bundles.glob("*.json"):
            old.unlink()
        entries = asyncio.run(_migrate_and_load_fest(url))
        console.print("migrated the database and loaded the shipped code lists")
        console.print(f"loaded the demo drug catalogue (FEST format, {entries} entries)")
        console.print(f"generating {args.patients} patients (seed {args.seed}) in {bundles}")
        write_bundles(bundles, args.patients, args.seed)
        status = asyncio.run(run_import(url, [str(bundles)], console, brief=True))
        if status != 0:
            console.print("[red]the demo population did not load; see the summary above[/red]")
            return status
        stamp.write_text(json.dumps(wanted))
    else:
        console.print(f"reusing the demo population in {data}")
    added, prescribed = asyncio.run(_load_portal(url, args.patients, args.seed))
    console.print(f"added {added} portal resources (families, fullmakt, form, GP slots from today)")
    console.print(f"issued {prescribed} e-prescriptions to the portal's citizens ($prescribe)")
    sent = asyncio.run(_load_messages(url))
    console.print(f"sent {sent} messages between the GP office, a hospital and a pharmacy")
    homecare, readings = asyncio.run(_load_homecare(url, history=True))
    console.print(
        f"added {homecare} home follow-up resources and {readings} readings from simulated "
        "home devices (velferdsteknologi)"
    )
    if args.no_serve:
        return 0
    base = f"http://{args.host}:{args.port}"
    environment = serve_environment(data, args.host, args.port)
    token = token_command(data, base)
    console.print(
        f"\n[bold]enjournal is running[/bold] with a demo population of {args.patients}, "
        "security on.\n"
        f"  portal:     {base}/helsenorge/  (helsenorge: log in with ID-porten, then choose a\n"
        "              demo citizen: Nils/citizen, a parent of children aged 5 and 13,\n"
        "              a fullmakt holder (proxy) and its giver, one with a confidential address)\n"
        f"  follow-up:  {base}/oppfolging/  (the home-care nurse's follow-up centre: log in with\n"
        "              HelseID, choose the home-care nurse; six patients' home devices report\n"
        "              every 20 s, some beyond their thresholds)\n"
        f"  messages:   {base}/meldinger/  (the message centre: log in with HelseID as the GP,\n"
        "              nurse or hospital doctor; referrals, discharge summaries, questions and\n"
        "              their receipts; docs/messaging.md, 'On the demo')\n"
        f"  FHIR API:   {base}/fhir   metadata: {base}/fhir/metadata\n"
        f"  login:      {base}/oidc (embedded OpenID Connect provider for the demo users)\n"
        f"  health:     {base}/health     metrics: {base}/metrics\n"
        f"  KPR feed:   ENJOURNAL_REGISTER_KEYS={data / REGISTER_KEYS} enjournal register export "
        f"kpr --period 2024 --database {url}\n"
        "Tokens for the demo users (valid an hour):\n"
        f"  GP:         TOKEN=$({token} --as gp)\n"
        f"  nurse:      TOKEN=$({token} --as nurse)\n"
        f"  home care:  TOKEN=$({token} --as homecare)   (follows six patients at home)\n"
        f"  hospital:   TOKEN=$({token} --as hospital)   (a doctor at the health trust that "
        "answers referrals automatically)\n"
        f"  pharmacist: TOKEN=$({token} --as pharmacist)\n"
        f"  citizen:    TOKEN=$({token} --as citizen)\n"
        f"  portal:     --as parent (two children), proxy (holds a fullmakt), giver, "
        "confidential\n"
        f'then: curl -H "Authorization: Bearer $TOKEN" "{base}/fhir/Patient?_count=5"\n'
        "Stop with Ctrl-C.\n",
        soft_wrap=True,  # the commands stay whole, to be copied, whatever the width
    )
    from enjournal.cli import main

    os.environ.update(environment)
    os.environ.setdefault("ENJOURNAL_AUTH", "on")
    ready_for_tokens(data, base)
    return main(["serve", "--database", url, "--host", args.host, "--port", str(args.port)])


KEY_FILE = "oidc-signing-key.json"
REGISTER_KEYS = "register-keys"  # the registers' pseudonym keys, one file each (0600)


def serve_environment(data: Path, host: str, port: int) -> dict[str, str]:
    """The settings ``enjournal demo`` serves with: its database, key and public URL."""
    return {
        "ENJOURNAL_DATABASE_URL": f"sqlite:///{data / 'enjournal.sqlite'}",
        "ENJOURNAL_PUBLIC_URL": f"http://{host}:{port}",
        "ENJOURNAL_OIDC_PROVIDER": "on",
        "ENJOURNAL_OIDC_KEY_FILE": str(data / KEY_FILE),
        "ENJOURNAL_DEMO_DEVICES": "on",  # simulated home devices send readings
        "ENJOURNAL_REGISTER_KEYS": str(data / REGISTER_KEYS),  # the demo's own (make_demo_keys)
        # Exports and feeds hold health data: with the demo's other data, not the working dir.
        "ENJOURNAL_EXPORT_DIR": str(data / "exports"),
        "ENJOURNAL_REGISTER_OUT": str(data / "registers"),
    }


def ready_for_tokens(data: Path, base: str) -> None:
    """Create the provider's key now and record where the demo serves, so `enjournal token`
    works at once, with or without ``--public-url``."""
    from enjournal.demo.tokens import record_server
    from enjournal.security.keys import load_or_create
    from enjournal.settings import Settings

    load_or_create(data / KEY_FILE)
    from enjournal.services.registers.feeds import registers
    from enjournal.services.registers.pseudonyms import make_demo_keys

    make_demo_keys(data / REGISTER_KEYS, registers())
    record_server(data, base, Settings.from_env().audience)


def token_command(data: Path, base: str) -> str:
    """The ``enjournal token`` command the demo prints: it names the demo's public URL (the
    tokens' issuer), so it works on any port, and from any shell."""
    venv = ".venv/bin/" if Path(".venv/bin/enjournal").exists() else ""
    return f"{venv}enjournal token --data {shlex.quote(str(data))} --public-url {base}"
