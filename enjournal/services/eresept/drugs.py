"""The drug catalogue as the prescription flow sees it: FEST products and interactions.

A thin layer over ``enjournal.services.eresept.fest.catalogue`` (FEST, domain 3.6) that
caches products per worker: a dispensing cycle asks for the same few packages again and
again, and the catalogue changes only when a new FEST file is loaded.
"""

from __future__ import annotations

import time

from enjournal.services.eresept.fest import catalogue

Product = catalogue.Product
Interaction = catalogue.Interaction
SEVERITY_ORDER = {"high": 0, "moderate": 1, "low": 2}
PRODUCT_TTL = 60.0  # seconds a worker trusts its copy of a product

_products: dict[str, tuple[float, object]] = {}


async def product(tx, ref: str) -> Product | None:
    """The product a reference names ("Medication/<id>" or a varenr), or None."""
    hit = _products.get(ref)
    if hit is not None and hit[0] + PRODUCT_TTL > time.monotonic():
        return hit[1]  # type: ignore[return-value]
    found = await catalogue.product(tx, ref)
    if len(_products) > 10_000:
        _products.clear()
    _products[ref] = (time.monotonic(), found)
    return found


def forget() -> None:
    """Drop cached products (after a catalogue load, and between tests)."""
    _products.clear()


async def interactions(tx, new_atc: str | None, current_atcs: list[str]) -> list[Interaction]:
    """Interactions of a new medicine with the current ones, most severe first."""
    atcs = [a for a in current_atcs if a]
    if not new_atc or not atcs:
        return []
    found = await catalogue.interactions(tx, new_atc, atcs)
    return sorted(found, key=lambda i: (SEVERITY_ORDER.get(i.severity, 9), i.id))


def detected_issue(interaction: Interaction, patient_ref: str, implicated: list[str]) -> dict:
    return catalogue.detected_issue(interaction, patient_ref, implicated)
