"""The `query_database` path in process: the pool vs a new connection per call, with round trips counted.

Both paths run the same query on the same Postgres. `pool` is `ReadOnlyDatabase.query` (guard,
then BEGIN READ ONLY, the transaction-local limits, the bounding query and COMMIT in one
pipeline); `connection per call` is the reference sample's behaviour (connect, execute, fetch
all, close). Calls alternate between the paths. Round trips per query are counted afterwards at
the protocol level, by a relay between the client and Postgres (`bench/roundtrips.py`).

    python bench/pool.py --calls 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import latency_summary, local_postgres, scratch_dir  # noqa: E402
from roundtrips import RoundTripCounter  # noqa: E402

import psycopg  # noqa: E402

from app.guards.sql import guard_sql  # noqa: E402
from app.upstreams.postgres import ReadOnlyDatabase  # noqa: E402

QUERY = "SELECT id, title, state FROM issues WHERE id = 42"
MAX_ROWS = 100
STATEMENT_TIMEOUT_MS = 5000
WARMUP_CALLS = 20
COUNTED_CALLS = 20


async def pooled(database: ReadOnlyDatabase) -> None:
    await database.query(guard_sql(QUERY).statement, max_rows=MAX_ROWS)


async def connection_per_call(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await (await conn.execute(QUERY)).fetchall()


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


async def round_trips(dsn: str) -> dict[str, float]:
    """Client waits per query on each path, through a counting relay (a warm pool for `pool`)."""
    parts = urlsplit(dsn)
    async with RoundTripCounter(parts.hostname, parts.port) as relay:
        relayed = relay.rewrite(dsn)
        database = ReadOnlyDatabase(relayed, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
        try:
            await pooled(database)  # opens the pool's connection; not counted
            before = relay.flights
            for _ in range(COUNTED_CALLS):
                await pooled(database)
            pool_flights = (relay.flights - before) / COUNTED_CALLS
        finally:
            await database.close()
        before = relay.flights
        for _ in range(COUNTED_CALLS):
            await connection_per_call(relayed)
        return {"pool": pool_flights, "connection per call": (relay.flights - before) / COUNTED_CALLS}


def run(calls: int) -> dict[str, dict[str, float]]:
    with scratch_dir("pool-bench") as scratch, local_postgres(Path(scratch)) as (_, dsn):
        samples = asyncio.run(measure(dsn, calls))
        trips = asyncio.run(round_trips(dsn))
    return {name: {**latency_summary(values), "rps": len(values) / sum(values), "round_trips": trips[name]}
            for name, values in samples.items()}


def report(stats: dict[str, dict[str, float]]) -> None:
    for name, row in stats.items():
        print(f"{name:>20}: p50 {row['p50']:.2f} ms  p99 {row['p99']:.2f} ms  {row['rps']:.0f} calls/s "
              f"{row['round_trips']:.1f} round trips per query (n={row['n']})")


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
