"""``enjournal register export NAME --period 2025 | 2025-03 [--out DIR] [--database URL]``:
one register's pseudonymised file set for a year or a month, with a progress bar.

An unknown register, a bad period or a missing pseudonym key is a one-line message and exit
status 2, before the database is opened.  The resources are read as the registers' system
client (policy and audit apply), as ``$register-export`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

COMMANDS = frozenset({"export"})


def add_parser(commands) -> None:
    export = commands.add_parser(
        "export", help="a register's pseudonymised feed for a year or a month (KPR)"
    )
    export.add_argument("name", help="the register, e.g. kpr")
    export.add_argument("--period", required=True, help="a year (2025) or a month (2025-03)")
    export.add_argument("--out", default=None, help="where to write (default: register_out)")
    export.add_argument("--database", default=None, help="database URL (default: settings)")


def run(args: argparse.Namespace) -> int:
    from enjournal.services.registers.feeds import (
        BadPeriod,
        UnknownRegister,
        load_feed,
        parse_period,
    )
    from enjournal.services.registers.pseudonyms import MissingKey, load_key
    from enjournal.settings import Settings

    settings = Settings.from_env(database_url=args.database, register_out=args.out)
    try:
        load_feed(args.name)
        parse_period(args.period)
        load_key(settings.register_keys, args.name)
    except (UnknownRegister, BadPeriod, MissingKey) as error:
        print(f"enjournal register export: {error.args[0]}", file=sys.stderr)
        return 2
    return asyncio.run(_export(settings, args.name, args.period))


async def _export(settings, name: str, period: str) -> int:
    from rich.console import Console

    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.security.setup import worker_security
    from enjournal.services.registers.feeds import export

    console = Console(stderr=True)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security), migrate=False)
    await security.start(platform.store)
    try:
        with _Bar(console) as bar:
            manifest = await export(platform, name, period, progress=bar)
    except LookupError as error:  # a search the platform refused
        console.print(f"[red]enjournal register export: {error}[/red]")
        return 1
    finally:
        await security.stop()
        await close_platform(platform)
    _summary(console, manifest)
    return 0


class _Bar:
    """The export's steps as a rich progress bar."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        )
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, total: int) -> None:
        # the register's own steps, and the files' writing and the end
        self.progress.update(self.task, total=total + 2, completed=0)

    def step(self, description: str) -> None:
        self.progress.update(self.task, description=description, advance=1)


def _summary(console, manifest: dict) -> None:
    counts = manifest.get("counts") or {}
    console.print(f"wrote {manifest['register']} {manifest['period']} to {manifest['location']}")
    for file in manifest["files"]:
        console.print(f"  {file['path']}  ({file['rows']} rows)")
    identity = manifest["identity"][0]
    reserved = counts.get("personsReserved", 0)
    console.print(
        f"  identity file (for the key holder only): {identity['path']}  "
        f"({identity['rows']} persons; {reserved} reserved against disclosure with FNR)"
    )
    console.print(
        f"  data quality: {manifest['quality']['findings']} findings in "
        f"{manifest['quality']['path']}"
    )
