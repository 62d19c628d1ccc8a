"""``enjournal messaging load-addresses FILE`` and ``enjournal messaging find``: load the
address register from a file (all or nothing, ``register_file``) and look parties up in it.

Exit codes: 0 done (find: something matched), 1 find matched nothing, 2 bad input (the
file, or no criterion), with one clear line on stderr."""

from __future__ import annotations

import sys
from typing import TextIO


async def load_addresses_command(
    database_url: str, path: str, *, source: str | None = None, out: TextIO | None = None
) -> int:
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.services.messaging.register_file import SOURCE, RegisterError, load_register
    from enjournal.settings import Settings

    out = out or sys.stdout
    platform = await build_platform(Settings.from_env(database_url=database_url))
    try:
        summary = await load_register(platform.store, path, source=source or SOURCE)
    except RegisterError as error:
        print(f"enjournal messaging load-addresses: {error} (nothing loaded)", file=sys.stderr)
        return 2
    finally:
        await close_platform(platform)
    if summary is None:
        print(f"{path}: already loaded, nothing changed", file=out)
        return 0
    print(
        f"{path}: {summary.added} parties added, {summary.changed} changed, "
        f"{summary.deactivated} deactivated, {summary.unchanged} unchanged; "
        f"{summary.endpoints} endpoints written",
        file=out,
    )
    return 0


async def find_command(
    database_url: str,
    *,
    her: str | None = None,
    name: str | None = None,
    org_nr: str | None = None,
    service: str | None = None,
    out: TextIO | None = None,
) -> int:
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.services.messaging.addresses import search_parties
    from enjournal.settings import Settings

    out = out or sys.stdout
    if not any((her, name, org_nr, service)):
        print("enjournal messaging find: give --her, --name, --orgnr or --service", file=sys.stderr)
        return 2
    platform = await build_platform(Settings.from_env(database_url=database_url), migrate=False)
    try:
        store = platform.store
        assert store is not None  # build_platform opened it
        async with store.transaction(write=False) as tx:
            parties = await search_parties(
                tx, her_id=her, name=name, org_nr=org_nr, service=service
            )
    finally:
        await close_platform(platform)
    if not parties:
        print("no party matches", file=sys.stderr)
        return 1
    for party in parties:
        print(_line(party), file=out)
    return 0


def _line(party) -> str:
    receives = ",".join(sorted(party.accepts)) or "-"
    state = "" if party.active else "\tinactive"
    kind = party.reference.split("/")[0]
    return f"{party.her_id}\t{party.name}\t{kind}\t{receives}{state}"


def add_parser(sub) -> None:
    """``enjournal messaging load-addresses | find | worker``."""
    messaging = sub.add_parser("messaging", help="messaging between organisations")
    commands = messaging.add_subparsers(dest="messaging_command", required=True)
    load = commands.add_parser(
        "load-addresses", help="load the address register from a FHIR Bundle or NDJSON file"
    )
    _database_option(load)
    load.add_argument("path", help="the register file")
    load.add_argument(
        "--source", help="which register (default: adresseregisteret); a reload deactivates "
        "what the same source no longer lists",
    )  # fmt: skip
    find = commands.add_parser("find", help="find communication parties in the address register")
    _database_option(find)
    find.add_argument("--her", help="HER-id")
    find.add_argument("--name", help="part of the name of an organisation, service or person")
    find.add_argument("--orgnr", help="organisation number: it, its departments and services")
    find.add_argument("--service", help="part of a service's name")
    worker = commands.add_parser(
        "worker", help="relay the outbox and receive messages until SIGTERM (run several)"
    )
    _database_option(worker)
    worker.add_argument(
        "--transport",
        default=None,
        help="'database' or amqp://user:password@host:5672/vhost "
        "(default: $ENJOURNAL_MESSAGING_TRANSPORT, else database)",
    )
    worker.add_argument("--batch", type=int, default=100, help="messages per transaction")
    worker.add_argument("--relays", type=int, default=1, help="relay loops in this process")
    worker.add_argument("--consumers", type=int, default=4, help="batches received at once")
    worker.add_argument("--queue", default=None, help="the queue (default enjournal.messages)")
    worker.add_argument(
        "--lease-seconds",
        type=float,
        default=None,
        help="how soon what a dead worker held is taken over (default 30 s outbox, 60 s queue)",
    )


def _database_option(parser) -> None:
    parser.add_argument(
        "--database", default=None, help="database URL (default: $ENJOURNAL_DATABASE_URL)"
    )


def _event_loop_runner():
    """uvloop's runner where it is installed (10-20 % more messages a second, measured in
    bench/messaging.py), else asyncio's."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def run(args) -> int:
    import asyncio

    if args.messaging_command == "worker":
        from enjournal.services.messaging.worker import worker_command

        return _event_loop_runner()(
            worker_command(
                args.database,
                args.transport,
                args.batch,
                args.relays,
                queue=args.queue,
                lease_seconds=args.lease_seconds,
                consumers=args.consumers,
            )
        )
    if args.messaging_command == "load-addresses":
        return asyncio.run(load_addresses_command(args.database, args.path, source=args.source))
    return asyncio.run(
        find_command(
            args.database, her=args.her, name=args.name, org_nr=args.orgnr, service=args.service
        )
    )
