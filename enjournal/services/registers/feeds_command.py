"""Placeholder: being built (issue 15)."""

from __future__ import annotations

import argparse

COMMANDS: frozenset[str] = frozenset()


def add_parser(commands) -> None:
    return None


def run(args: argparse.Namespace) -> int:
    return 2
