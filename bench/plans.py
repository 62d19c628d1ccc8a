"""Custom versus generic plans of the benchmark's searches on a loaded database.

    python -m bench.plans --database postgresql://postgres@127.0.0.1/DB [--sets 5]

For the first ``--sets`` parameter sets of each search: the SQL execution time (EXPLAIN
ANALYZE) of the plan PostgreSQL makes for those values (custom) and of the generic plan that
a prepared statement switches to after five executions (asyncpg prepares every statement),
and the index each plan starts from.  ``--extended-stats`` first adds the multi-column
statistics of bench.run.EXTENDED_STATISTICS (changes the database!).
"""

from __future__ import annotations

import argparse
import asyncio

from bench.run import (
    create_extended_statistics,
    execution_ms,
    explain_searches,
    search_parameters,
)


def driving_index(plans: list[dict]) -> str:
    """The first index scanned in the main statement's plan (the innermost first child)."""
    for line in plans[0]["plan"] if plans else []:
        if "Index Scan" in line or "Seq Scan" in line:
            text = line.strip().removeprefix("->").strip()
            return text.split("  (")[0]
    return "?"


async def run(opts: argparse.Namespace) -> None:
    if opts.extended_stats:
        await create_extended_statistics(opts.database)
    params = await search_parameters(opts.database, max(opts.sets, 5))
    for name in params:
        print(name)
        for i in range(min(opts.sets, len(params[name]))):
            one = {name: params[name]}
            custom = (await explain_searches(opts.database, one, which=i)).get(name, [])
            generic = (await explain_searches(opts.database, one, which=i, generic=True)).get(
                name, []
            )
            print(
                f"  set {i}: custom {execution_ms(custom):8.2f} ms via {driving_index(custom)}"
                f"\n         generic {execution_ms(generic):8.2f} ms via {driving_index(generic)}"
            )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.plans", description=__doc__)
    p.add_argument("--database", required=True)
    p.add_argument("--sets", type=int, default=3)
    p.add_argument("--extended-stats", action="store_true")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
