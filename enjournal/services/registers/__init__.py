"""Registers: the shared record's path to health registers and statistics (domain.md 7).

- ``bulk``: FHIR Bulk Data ``$export`` (system, Patient, Group), asynchronous, NDJSON files.
- ``views_api``, ``views_export``: SQL-on-FHIR v2 ``$viewdefinition-run`` and the
  asynchronous ``$viewdefinition-export`` (on the export jobs); the
  engines (DuckDB, PostgreSQL, Spark) are in ``enjournal.storage.views``.
- ``feeds``: each register's pseudonymised feed (KPR), its identity file and data-quality
  report; ``enjournal register export``.
- ``statistics``: counts from the views with small-cell and complementary suppression.

See docs/registers.md.
"""

from __future__ import annotations

from enjournal.services import Job


def register(platform) -> list[Job]:
    """Add the registers' operations; return their jobs."""
    from enjournal.services.registers import api, jobs

    api.register(platform)
    return jobs.all_jobs(platform)
