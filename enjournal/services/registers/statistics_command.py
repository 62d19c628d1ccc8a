"""``enjournal register stats MEASURE --period ... [--dimension ...]``: safe statistics on
the command line.

The command is a system client of the platform in this process: it asks
``$register-statistics`` through ``Platform.handle`` with the statistics client's scopes, so
the same guard, suppression, audit and publication log apply as over HTTP (no side door),
and prints the published table: one line per cell, margins included, a hidden cell shown
as ``.`` with its reason (p: primary, s: secondary).  ``--json`` prints the MeasureReport.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

COMMANDS = frozenset({"stats"})
STATISTICS_CLIENT = "enjournal-statistics"
STATISTICS_SCOPES = frozenset(
    {
        "system/Encounter.rs",
        "system/Condition.rs",
        "system/Patient.rs",
        "system/EpisodeOfCare.rs",
        "system/MeasureReport.crs",
    }
)
DEFAULT_DB = "sqlite:///data/enjournal.sqlite"
TOTAL_LABEL = "Totalt"
REASONS = {"primary": "p", "secondary": "s"}


def add_parser(commands) -> None:
    from enjournal.services.registers.statistics import DEFAULT_THRESHOLD, MEASURES

    stats = commands.add_parser("stats", help="counts with small cells suppressed")
    stats.add_argument("measure", choices=sorted(MEASURES))
    stats.add_argument("--period", required=True, help="2025, 2025-Q2, 2025-03 or 2025-01/2025-06")
    stats.add_argument(
        "--dimension", "-d", action="append", default=[],
        help="municipality, age, sex, chapter, period (repeat or comma-separate)",
    )  # fmt: skip
    stats.add_argument("--grain", choices=("month", "quarter", "year"), default="month")
    stats.add_argument("--age-bands", help="first year of each band, e.g. 0,18,67")
    stats.add_argument("--threshold", type=_bounded, default=DEFAULT_THRESHOLD)
    stats.add_argument(
        "--protection", type=_bounded, help="a hidden cell's range (default: threshold)"
    )
    stats.add_argument("--json", action="store_true", help="print the MeasureReport")
    stats.add_argument(
        "--database",
        default=os.environ.get("ENJOURNAL_DATABASE_URL", DEFAULT_DB),
        help="sqlite:///PATH or postgresql://... (default: $ENJOURNAL_DATABASE_URL)",
    )


def _bounded(text: str) -> int:
    """A threshold or protection as the operation takes it (argparse: one line, exit 2)."""
    from enjournal.services.registers.statistics import MAX_THRESHOLD

    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= number <= MAX_THRESHOLD:
        raise argparse.ArgumentTypeError(f"{number} is not within 0-{MAX_THRESHOLD}")
    return number


def run(args: argparse.Namespace) -> int:
    status, body = asyncio.run(ask(args.database, parameters(args)))
    if status >= 400:
        issues = body.get("issue") or [{}]
        print(f"enjournal register stats: {issues[0].get('diagnostics')}", file=sys.stderr)
        return 1 if status >= 500 else 2
    if args.json:
        from enjournal.fhir import jsonio

        print(jsonio.dumps(body).decode())
    else:
        show(body)
    return 0


def parameters(args: argparse.Namespace) -> dict:
    values = {
        "measure": args.measure,
        "period": args.period,
        "dimension": ",".join(args.dimension),
        "grain": args.grain,
        "ageBands": args.age_bands,
        "threshold": args.threshold,
        "protection": args.protection,
    }
    return {k: v for k, v in values.items() if v not in (None, "")}


async def ask(database_url: str, values: dict) -> tuple[int, dict]:
    """``$register-statistics`` in process, as the statistics client."""
    import orjson

    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.fhir import jsonio
    from enjournal.rest.message import FhirRequest
    from enjournal.security.principal import Principal
    from enjournal.security.setup import worker_security
    from enjournal.settings import Settings

    settings = Settings.from_env(database_url=database_url)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    client = Principal("system", STATISTICS_CLIENT, STATISTICS_CLIENT, STATISTICS_SCOPES)
    try:
        body = {"resourceType": "Parameters", "parameter": [_part(k, v) for k, v in values.items()]}
        headers = {"content-type": "application/fhir+json"}
        request = FhirRequest(
            "POST", ["$register-statistics"], [], headers, jsonio.dumps(body), settings.fhir_base
        )
        response = await platform.handle(request, client)
        return response.status, orjson.loads(response.body) if response.body else {}
    finally:
        await security.stop()
        await close_platform(platform)


def _part(name: str, value) -> dict:
    kind = "valueInteger" if isinstance(value, int) else "valueString"
    return {"name": name, kind: value}


def rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The report's cells as text: a column per dimension and the count, the full table
    first, then each margin, the grand total last."""
    group = report["group"][0]
    stratifiers = list(reversed(group.get("stratifier") or []))
    names = [c["coding"][0]["code"] for c in (stratifiers[0]["code"] if stratifiers else [])]
    lines = []
    for stratifier in stratifiers:
        for stratum in stratifier["stratum"]:
            given = {_code(c["code"]): _code(c["value"]) for c in stratum["component"]}
            cells = [given.get(n, TOTAL_LABEL) for n in names]
            lines.append([*cells, _count(stratum["population"][0])])
    lines.append([*(TOTAL_LABEL for _ in names), _count(group["population"][0])])
    return [*names, "count"], lines


def _code(concept: dict) -> str:
    return str(concept["coding"][0]["code"])


def _count(population: dict) -> str:
    if "count" in population:
        return str(population["count"])
    reason = (population.get("extension") or [{}])[0].get("valueCode")
    return f". ({REASONS.get(reason, '?')})"


def show(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    header, lines = rows(report)
    period = report.get("period") or {}
    title = f"{report['group'][0]['code']['text']}, {period.get('start')} to {period.get('end')}"
    table = Table(title=title)
    for name in header:
        table.add_column(name, justify="right" if name == "count" else "left")
    for line in lines:
        table.add_row(*line)
    console = Console()
    console.print(table)
    console.print(f"[dim]. = suppressed (p: below the threshold, s: to protect another); "
                  f"MeasureReport/{report.get('id')}[/dim]")  # fmt: skip
