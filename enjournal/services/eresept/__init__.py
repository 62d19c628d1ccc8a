"""The eresept service (being built)."""

from __future__ import annotations


def register(context) -> list:
    return []
