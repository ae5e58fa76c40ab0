"""`query_database` with the connection pool vs a new connection per call, same Postgres, same query, one run.

Both paths run the guard and the same read-only execution (`READ ONLY` transaction, `SET LOCAL`
timeouts, server-side cursor, row cap); they differ only in where the connection comes from: the
server's `ReadOnlyDatabase` pool, or a fresh `psycopg` connection opened and closed around each
call, as the reference sample does. Calls alternate between the two paths.

    python bench/pool.py --calls 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import latency_summary, local_postgres, scratch_dir  # noqa: E402

import psycopg  # noqa: E402

from app.guards.sql import guard_sql  # noqa: E402
from app.upstreams.postgres import ReadOnlyDatabase, fetch_capped, set_local_limits  # noqa: E402

QUERY = "SELECT id, title, state FROM issues WHERE state = 'open' ORDER BY id LIMIT 20"
MAX_ROWS = 20
STATEMENT_TIMEOUT_MS = 5000
WARMUP_CALLS = 20


async def pooled(database: ReadOnlyDatabase) -> None:
    await database.query(guard_sql(QUERY).sql, max_rows=MAX_ROWS)


async def connection_per_call(dsn: str) -> None:
    sql = guard_sql(QUERY).sql
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.set_read_only(True)
        async with conn.transaction():
            await set_local_limits(conn, STATEMENT_TIMEOUT_MS)
            await fetch_capped(conn, sql, MAX_ROWS)


async def measure(dsn: str, calls: int) -> dict[str, list[float]]:
    database = ReadOnlyDatabase(dsn, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    paths = {"pool": lambda: pooled(database), "connection per call": lambda: connection_per_call(dsn)}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for index in range(WARMUP_CALLS + calls):
            order = list(paths) if index % 2 == 0 else list(reversed(paths))
            for name in order:
                started = time.perf_counter()
                await paths[name]()
                if index >= WARMUP_CALLS:
                    samples[name].append(time.perf_counter() - started)
    finally:
        await database.close()
    return samples


def run(calls: int) -> dict[str, dict[str, float]]:
    with scratch_dir("pool-bench") as scratch, local_postgres(Path(scratch)) as (_, dsn):
        samples = asyncio.run(measure(dsn, calls))
    return {name: {**latency_summary(values), "rps": len(values) / sum(values)} for name, values in samples.items()}


def report(stats: dict[str, dict[str, float]]) -> None:
    for name, row in stats.items():
        print(f"{name:>20}: p50 {row['p50']:.2f} ms  p99 {row['p99']:.2f} ms  {row['rps']:.0f} calls/s (n={row['n']})")
    for metric in ("p50", "p99"):
        print(f"ratio per-call/pool {metric}: {stats['connection per call'][metric] / stats['pool'][metric]:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="measured calls per path")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    stats = run(args.calls)
    print(json.dumps(stats)) if args.json else report(stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
