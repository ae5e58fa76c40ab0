"""Latency of one call, side by side: this server vs bare FastMCP vs the reference sample, one run.

Three servers run at once (see `bench/servers.py`) against one Postgres. One MCP session per
(server, tool) pair, each on its own keep-alive connection, through the light client of
`bench/client.py` (the official client adds a ~45 ms floor per call on this machine, which would
hide the differences measured here). Each comparison is its own group: a round calls every pair of
the group once, in a shuffled order (seeded, so runs repeat), so machine noise falls on all of them
alike and each pair follows every other pair equally often. (A fixed rotation of three pairs put
the database call right after the echo call twice as often as the reverse, so whatever work one
call leaves for the event loop landed in the other unevenly.) (Mixing the
groups would let the reference's connection set-up, a Postgres fork and SCRAM exchange per call,
slow every other pair on two cores.) The groups:

- goal 1: `query_database` on this server vs the reference sample (same query, same Postgres),
  and vs this server's own trivial `echo` tool; plus a new text on every call, which the guard's
  memory of admissions cannot answer;
- goal 2: `echo` on the fully assembled server (auth, every middleware, audit to a file) vs bare FastMCP;
- goal 3: `attestation_status` (non-TEE) on this server vs the reference sample.

    python bench/latency.py --rounds 300
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import compared_servers, latency_summary, scratch_dir, upstreams  # noqa: E402

from client import RawMcpClient, result_text  # noqa: E402

QUERY = "SELECT id, title, state FROM issues WHERE id = 42"
WARMUP_ROUNDS = 30
ORDER_SEED = 15
BACK_TO_BACK = ", right after the same server"
# Per comparison: label -> (server kind, tool, arguments, or a function of the call's number giving them).
ECHO = {"text": "hello"}
# The server remembers the guard's admissions per caller; a text never sent before pays the parse.
NEW_QUERY_TEXT = "full query_database, a new text each call"


def new_query(number: int) -> dict:
    return {"sql": f"{QUERY} AND {number} >= 0"}



GROUPS = {
    "stack": {"bare echo": ("bare", "echo", ECHO), "full echo": ("full", "echo", ECHO)},
    "database": {"full query_database": ("full", "query_database", {"sql": QUERY}),
                 "reference query_database": ("reference", "query_database", {"sql": QUERY}),
                 "full echo": ("full", "echo", ECHO),
                 NEW_QUERY_TEXT: ("full", "query_database", new_query)},
    "status": {"full attestation_status": ("full", "attestation_status", {}),
               "reference attestation_status": ("reference", "attestation_status", {})},
}


async def measure(servers, pairs: dict[str, tuple[str, str, Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call for each pair, the pairs called in a shuffled order each round.

    Calls that come right after a call to the same server are also reported on their own
    (`BACK_TO_BACK`): that is where work one call leaves for the server's event loop lands.
    """
    samples: dict[str, list[float]] = {label: [] for label in pairs}
    samples.update({label + BACK_TO_BACK: [] for label in pairs})
    async with AsyncExitStack() as stack:
        sessions = {}
        for label, (kind, _, _) in pairs.items():
            server = servers[kind]
            sessions[label] = await stack.enter_async_context(RawMcpClient(server.url, server.headers()))
        labels = list(pairs)
        order = random.Random(ORDER_SEED)
        previous_kind = None
        for index in range(WARMUP_ROUNDS + rounds):
            order.shuffle(labels)
            for label in labels:
                kind, tool, arguments = pairs[label]
                started = time.perf_counter()
                result = await sessions[label].call(tool, arguments(index) if callable(arguments) else arguments)
                elapsed = time.perf_counter() - started
                if result.get("isError"):
                    raise RuntimeError(f"{label} failed: {result_text(result)}")
                if index >= WARMUP_ROUNDS:
                    samples[label].append(elapsed)
                    if kind == previous_kind:
                        samples[label + BACK_TO_BACK].append(elapsed)
                previous_kind = kind
    return {label: values for label, values in samples.items() if values}


def run(rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per group, per pair: the latency summary in ms."""
    with scratch_dir("latency") as scratch, upstreams(Path(scratch)) as env, \
            compared_servers(env, Path(scratch) / "servers") as servers:
        return {group: {label: latency_summary(values) for label, values in
                        asyncio.run(measure(servers, pairs, rounds)).items()}
                for group, pairs in GROUPS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    for group, stats in run(args.rounds).items():
        for label, row in stats.items():
            print(f"{group:>9} {label:>30}: p50 {row['p50']:.2f} ms  p99 {row['p99']:.2f} ms  (n={row['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
