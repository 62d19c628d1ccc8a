"""The registers' FHIR operations, one module per area (each has ``register(platform)``)."""

from __future__ import annotations

from enjournal.services.registers import bulk, feeds, statistics, views_api, views_export

AREAS = (bulk, views_api, views_export, feeds, statistics)


def register(platform) -> None:
    for area in AREAS:
        area.register(platform)
