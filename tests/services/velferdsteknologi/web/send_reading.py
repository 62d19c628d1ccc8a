"""Send one home-device reading through the hub's ingest, as a device would: ``python -m
tests.services.velferdsteknologi.web.send_reading <database> <device> <fnr> <kind> <value>``.

Prints the outcome and, on its last line, the patient's open alerts (Task id and kind) as
JSON.  A process of its own: the browser tests' server is another process on the database.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

import orjson


async def main(database: str, device: str, fnr: str, kind: str, value: float) -> list[dict]:
    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.security.setup import worker_security
    from enjournal.services.velferdsteknologi import alerts
    from enjournal.services.velferdsteknologi.ingest import Ingest, Message
    from enjournal.settings import Settings

    settings = Settings(database_url=database, jobs=False)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security), migrate=False)
    await security.start(platform.store)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        ingest = Ingest(platform)
        body = {"id": f"test-{kind}-{now:%H%M%S}", "type": kind, "value": value}
        body |= {"unit": "%", "measured": now.isoformat(), "patient": fnr}
        outcomes = await ingest.handle([Message(device, orjson.dumps(body))])
        print(outcomes, file=sys.stderr)
        patient = outcomes[0].observation and await _patient(ingest, outcomes[0].observation)
        mine = [("identifier", f"{alerts.ALERT_ID}|"), ("patient", f"Patient/{patient}")]
        found = await ingest.hub.search("Task", [*mine, ("status", "requested"), ("_count", "99")])
        return [{"id": t["id"], "kind": t["code"]["coding"][0]["code"]} for t in found]
    finally:
        await security.stop()
        await close_platform(platform)


async def _patient(ingest, observation_id: str) -> str:
    _status, obs = await ingest.hub.call("GET", f"Observation/{observation_id}")
    return obs["subject"]["reference"].split("/", 1)[1]


if __name__ == "__main__":
    database, device, fnr, kind, value = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(database, device, fnr, kind, float(value)))))
