"""``enjournal register ...``: the registers' commands, each area adding its own."""

from __future__ import annotations

import argparse

from enjournal.services.registers import feeds_command, statistics_command

AREAS = (feeds_command, statistics_command)


def add_parser(sub) -> None:
    register = sub.add_parser("register", help="health registers: feeds and statistics")
    commands = register.add_subparsers(dest="register_command", required=True)
    for area in AREAS:
        area.add_parser(commands)


def run(args: argparse.Namespace) -> int:
    for area in AREAS:
        if args.register_command in area.COMMANDS:
            return area.run(args)
    raise SystemExit(f"enjournal register: unknown command {args.register_command!r}")
