"""Helsenorge's FHIR operations: one module per group, each with ``register(platform)``.

- ``gp.py``: the GP office's digital services (messages, appointments, renewals, forms).
- ``fullmakt.py``: giving, changing and revoking a power of attorney; whom one may act for.
"""

from __future__ import annotations


def register_operations(platform) -> None:
    """Add every group's operations to the platform's table."""
    for module in _groups():
        module.register(platform)


def _groups() -> list:
    from enjournal.services.helsenorge import fullmakt, gp

    return [gp, fullmakt]
