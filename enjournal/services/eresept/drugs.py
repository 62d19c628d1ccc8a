"""The drug catalogue as the prescription flow sees it: FEST products and interactions.

A thin layer over ``enjournal.services.eresept.fest.catalogue`` (FEST, domain 3.6) that
caches products and the interaction index in the serving platform's state (``state.py``):
a dispensing cycle asks for the same few packages again and again, and the catalogue
changes only when a new FEST file is loaded.
"""

from __future__ import annotations

from enjournal.services.eresept.fest import catalogue
from enjournal.services.eresept.state import current

Product = catalogue.Product
Interaction = catalogue.Interaction
SEVERITY_ORDER = {"high": 0, "moderate": 1, "low": 2}


async def product(tx, ref: str) -> Product | None:
    """The product a reference names ("Medication/<id>" or a varenr), or None."""
    return await current().products.get(ref, lambda: catalogue.product(tx, ref))


async def interactions(tx, new_atc: str | None, current_atcs: list[str]) -> list[Interaction]:
    """Interactions of a new medicine with the current ones, most severe first."""
    atcs = [a for a in current_atcs if a]
    if not new_atc or not atcs:
        return []
    found = await catalogue.interactions(tx, new_atc, atcs, current().interaction_indexes)
    return sorted(found, key=lambda i: (SEVERITY_ORDER.get(i.severity, 9), i.id))


def detected_issue(interaction: Interaction, patient_ref: str, implicated: list[str]) -> dict:
    return catalogue.detected_issue(interaction, patient_ref, implicated)
