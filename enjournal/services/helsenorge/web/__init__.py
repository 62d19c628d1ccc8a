"""The portal's web pages (filled in below)."""

from __future__ import annotations


def routes(platform) -> list:
    return []
