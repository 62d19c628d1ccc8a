"""Markdown tables from benchmark result files (for docs/performance.md).

python -m bench.report bench/results/A.json [B.json ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

TARGETS = {"ingest": 1500, "read": 2000, "search_p95_ms": 50, "rss_mb": 300}


def _ok(good: bool) -> str:
    return "yes" if good else "**no**"


def tables(sizes: list[dict]) -> str:
    out = []
    out.append(
        "| resources | POST /fhir (res/s) | x COPY | `enjournal import` (res/s) | x COPY "
        "| COPY baseline (res/s) | ingest worker peak RSS (MB) |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---|")
    for s in sizes:
        copy = s["copy"]["resources_per_second"]
        post = s["ingest_http"]["resources_per_second"]
        imp = s.get("ingest_import", {}).get("resources_per_second")
        out.append(
            f"| {s['resources']:,} | {post:,.0f} | {post / copy:.4f} | "
            + (f"{imp:,.0f} | {imp / copy:.4f}" if imp else "n/a | n/a")
            + f" | {copy:,.0f} | {', '.join(map(str, s['ingest_http']['peak_rss_mb']))} |"
        )
    out.append("")
    out.append(
        "| resources | server | read by id (req/s) | p50 ms | p99 ms | x PK baseline "
        "| PK baseline (req/s, p50/p99 ms) | worker peak RSS (MB) | load avg (1 min) |"
    )
    out.append("|---:|---|---:|---:|---:|---:|---|---|---:|")
    for s in sizes:
        b = s["read_baseline"]
        for label, r in s["reads"].items():
            out.append(
                f"| {s['resources']:,} | {label} | {r['per_second']:,.0f} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {r['per_second'] / b['per_second']:.3f} | "
                f"{b['per_second']:,.0f} ({b['p50_ms']}/{b['p99_ms']}) | "
                f"{', '.join(map(str, r['peak_rss_mb']))} | "
                f"{s.get('load_average', {}).get('reads_' + label, ['-'])[0]} |"
            )
    out.append("")
    names = list(next(iter(sizes[0]["searches"].values())).keys())
    out.append("| resources | server | " + " | ".join(f"{n} p50/p95 ms" for n in names) + " |")
    out.append("|---:|---|" + "---:|" * len(names))
    for s in sizes:
        for label, searches in s["searches"].items():
            cells = []
            for n in names:
                v = searches.get(n, {})
                cells.append(f"{v.get('p50_ms', '-')} / {v.get('p95_ms', '-')}")
            out.append(f"| {s['resources']:,} | {label} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "| resources | search | SQL execution ms (EXPLAIN ANALYZE) | with extended statistics |"
    )
    out.append("|---:|---|---:|---:|")
    for s in sizes:
        ext = s.get("explain_extended_stats") or {}
        for n, plans in s.get("explain", {}).items():
            before = sum(_exec(p) for p in plans)
            after = sum(_exec(p) for p in ext.get(n, [])) if isinstance(ext, dict) else None
            out.append(
                f"| {s['resources']:,} | {n} | {before:.2f} | "
                + (f"{after:.2f}" if ext.get(n) else "-")
                + " |"
            )
    return "\n".join(out)


def _exec(plan: dict) -> float:
    return sum(
        float(line.split()[2]) for line in plan["plan"] if line.startswith("Execution Time:")
    )


def main() -> None:
    sizes = []
    for path in sys.argv[1:]:
        report = orjson.loads(Path(path).read_bytes())
        sizes.extend(report["sizes"])
    sizes.sort(key=lambda s: s["resources"])
    print(tables(sizes))


if __name__ == "__main__":
    main()
