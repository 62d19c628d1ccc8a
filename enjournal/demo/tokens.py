"""``enjournal token --as gp|nurse|pharmacist|citizen|system``: a token for a demo user.

Signed with the embedded provider's key in the demo's data folder, so the running demo
server accepts it.  For scripts and tests; the demo server must run with the same data.
The token's issuer is the demo's public URL + ``/oidc``: ``--public-url``, else the URL the
demo recorded in the data folder when it started (``demo-server.json``), else
``$ENJOURNAL_PUBLIC_URL``, else http://127.0.0.1:8080.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from enjournal.demo.users import SCOPES, demo_users
from enjournal.security.keys import load_or_create
from enjournal.security.provider import Client, issue_system_token, issue_token

SERVER_FILE = "demo-server.json"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
LIFETIME = 3600  # an hour: these tokens are for scripts against the demo
SYSTEM_CLIENT = Client(
    "enjournal-demo-integration", scopes=[SCOPES["system"]], name="Demo integration"
)


def print_token(args: argparse.Namespace) -> int:
    data = Path(args.data)
    key_file = data / "oidc-signing-key.json"
    database = data / "enjournal.sqlite"
    if not key_file.exists() or not database.exists():
        print(f"no demo in {data}: run `make demo` (or `enjournal demo`) first", file=sys.stderr)
        return 2
    key = load_or_create(key_file)
    public_url, audience = demo_server(data, args.public_url)
    issuer = f"{public_url.rstrip('/')}/oidc"
    if args.who == "system":
        print(
            issue_system_token(
                SYSTEM_CLIENT,
                key=key,
                issuer=issuer,
                audience=audience,
                scopes=SCOPES["system"],
                lifetime=LIFETIME,
            )
        )
        return 0
    users = {u.name: u for u in asyncio.run(_users(f"sqlite:///{database}"))}
    user = users.get(args.who)
    if user is None:
        print(f"the demo population has no {args.who} user", file=sys.stderr)
        return 2
    print(
        issue_token(
            user,
            key=key,
            issuer=issuer,
            audience=audience,
            scopes=SCOPES[args.who],
            patient=args.patient,
            lifetime=LIFETIME,
        )
    )
    return 0


async def _users(url: str):
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.settings import Settings

    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        return await demo_users(platform.store)
    finally:
        await close_platform(platform)


def record_server(data: Path, public_url: str, audience: str) -> None:
    """Written by ``enjournal demo`` as it starts serving, for ``enjournal token``."""
    record = {"public_url": public_url, "audience": audience}
    (data / SERVER_FILE).write_text(json.dumps(record), encoding="utf-8")


def demo_server(data: Path, public_url: str | None) -> tuple[str, str]:
    """The public URL and token audience of the demo served from ``data``."""
    try:
        recorded = json.loads((data / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    public_url = (
        public_url
        or recorded.get("public_url")
        or os.environ.get("ENJOURNAL_PUBLIC_URL")
        or DEFAULT_PUBLIC_URL
    )
    audience = recorded.get("audience") or os.environ.get("ENJOURNAL_AUDIENCE") or "enjournal"
    return public_url, audience
