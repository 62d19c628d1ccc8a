"""Velferdsteknologi: remote follow-up at home and safety alarms (domain.md section 6).

Readings from home devices reach the record through the hub (``ingest.py``: MQTT through
``mqtt.py``, or a gateway's FHIR batch over HTTP), are checked (``readings.py``, the device
hook ``hooks.py``) and stored once; ``rules.py`` and ``news2.py`` decide what needs a
nurse's attention.  See docs/velferdsteknologi.md.
"""

from __future__ import annotations

from enjournal.services import Job


def register(platform) -> list[Job]:
    """Add the device hook, the operations, the follow-up centre's pages and the jobs."""
    from enjournal.services.velferdsteknologi import api, hooks, jobs

    platform.add_hook(hooks.MARKER, hooks.check)
    platform.add_hook(hooks.ALERT_MARKER, hooks.alerts_by_the_hub)
    api.register(platform)
    if platform.serving:
        from enjournal.services.velferdsteknologi.web import routes

        platform.routes.extend(routes(platform))
    found = jobs.all_jobs(platform)
    if platform.settings.demo_devices:
        from enjournal.services.velferdsteknologi.simulator import demo_job

        found.append(demo_job(platform))
    return found
