"""Peak memory of a DuckDB view over NDJSON: the KPR contact view (the register feed's
``feeds/kpr/contact.json``) over Encounters shaped as the demo's GP and out-of-hours
contacts (default 16,578: the 5,000-patient demo's year, about 14 MB of NDJSON).

Each case runs in a fresh Python process (``ru_maxrss`` is a process's peak), which reports
its peak RSS after importing the engine and after the view, and the view's wall time:

- ``count``: ``count(*)`` over ``read_json_objects`` of the file (the reader alone);
- ``whole``: the view with the resource parsed at every call on it (``DuckDialect.fields_once``
  False: the engine before issue 15's memory fix);
- ``once``: the view as the engine runs it (the top-level elements taken out in one parse);
- ``once-1``: the same on one thread (``ENJOURNAL_VIEWS_DUCKDB_THREADS=1``).

Run: ``python -m bench.views_memory [--resources 16578] [--repeat 3]``; prints one JSON line
per case and saves the report under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import machine
from bench.common import save_report

KPR = "https://enjournal.no/fhir/CodeSystem/kpr-kontakttype"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CASES = {"count": {}, "whole": {}, "once": {}, "once-1": {"ENJOURNAL_VIEWS_DUCKDB_THREADS": "1"}}

PROBE = """
import json, resource, sys, time
import duckdb
from enjournal.storage.views import duckdb as engine, run_view

case, path = sys.argv[1], sys.argv[2]
view = json.load(open("enjournal/services/registers/feeds/kpr/contact.json"))
engine.DuckDialect.fields_once = case != "whole"
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if case == "count":
    rows = duckdb.execute(
        f"SELECT count(*) FROM read_json_objects('{path}', format = 'newline_delimited', "
        f"maximum_object_size = {engine.MAX_RESOURCE_BYTES})"
    ).fetchone()[0]
else:
    rows = len(run_view(view, [path], "duckdb").rows)
took = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"case": case, "rows": rows, "before_mb": before // 1024,
                  "peak_mb": after // 1024, "added_mb": (after - before) // 1024,
                  "seconds": round(took, 2)}))
"""


def encounter(n: int, rng: random.Random) -> dict:
    """A contact as the demo writes one (population.py, municipal.py), with 0-2 diagnoses."""
    kind = rng.choice(["fastlege", "legevakt"])
    return {
        "resourceType": "Encounter",
        "id": f"{rng.getrandbits(128):032x}",
        "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00.123+00:00"},
        "status": "finished",
        "class": {"system": ACT, "code": rng.choice(["AMB", "EMER", "VR"])},
        "type": [{"coding": [{"system": KPR, "code": kind}], "text": f"Konsultasjon ({kind})"}],
        "subject": {"reference": f"Patient/{rng.getrandbits(128):032x}"},
        "participant": [{"individual": {"reference": f"Practitioner/gp-{rng.randrange(200)}"}}],
        "period": {"start": "2024-03-04T09:15:00+01:00", "end": "2024-03-04T09:35:00+01:00"},
        "serviceProvider": {"reference": f"Organization/org-{rng.randrange(50)}"},
        "diagnosis": [
            {"condition": {"reference": f"Condition/c-{n}-{k}"}, "rank": k + 1}
            for k in range(rng.choice([0, 1, 1, 2]))
        ],
    }


def write_file(path: Path, count: int) -> None:
    rng = random.Random(11)
    with path.open("w") as out:
        for n in range(count):
            out.write(json.dumps(encounter(n, rng), ensure_ascii=False) + "\n")


def run_case(case: str, path: Path) -> dict:
    env = {**os.environ, **CASES[case]}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, case, str(path)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=16_578)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    report: dict = {"machine": machine.describe("not used", {}), "options": vars(options)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Encounter.ndjson"
        write_file(path, options.resources)
        report["ndjson_mb"] = round(path.stat().st_size / 1e6, 1)
        print(json.dumps({"resources": options.resources, "ndjson_mb": report["ndjson_mb"]}))
        report["runs"] = []
        for case in CASES:
            for _ in range(options.repeat):
                found = run_case(case, path)
                print(json.dumps(found), flush=True)
                report["runs"].append(found)
    save_report("views-memory", report)


if __name__ == "__main__":
    main()
