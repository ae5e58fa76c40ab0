"""Saturation: a fixed number of concurrent clients in a closed loop, bare FastMCP vs the full stack, one run.

Each client is one MCP session (its own principal on the full server) that calls as fast as the
answers come back. For every level (8, 32, 128 clients) the bare and the full server take turns in
short slices, so both see the same machine; the figures per side are calls/s, p99 and refusals.
Then the same clients drive `query_database` and `github_search_issues` (stand-in) on the full
server, to show where the packaged concurrency caps and queue times bind.

    python bench/saturation.py --slice 3 --slices 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client import McpCallError, RawMcpClient, result_text  # noqa: E402
from harness import compared_servers, percentile, scratch_dir, upstreams  # noqa: E402

LEVELS = (8, 32, 128)
ECHO = ("echo", {"text": "hello"})
UPSTREAM_CALLS = {
    "query_database": ("query_database", {"sql": "SELECT id, title, state FROM issues WHERE id = 42"}),
    "github_search_issues": ("github_search_issues", {"query": "login", "max_results": 5}),
}
CONCURRENCY_REFUSAL = "too many concurrent calls"
RATE_REFUSAL = "rate limit"


async def closed_loop(clients: list[RawMcpClient], call: tuple[str, dict], seconds: float) -> dict:
    """Every client calls back to back for `seconds`; returns the tally."""
    tool, arguments = call
    latencies: list[float] = []
    outcomes: Counter = Counter()
    stop_at = time.perf_counter() + seconds

    async def one(client: RawMcpClient) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                result = await client.call(tool, arguments)
            except McpCallError:
                outcomes["protocol error"] += 1
                continue
            latencies.append(time.perf_counter() - started)
            text = result_text(result) if result.get("isError") else ""
            outcomes["ok" if not result.get("isError") else "concurrency refusal" if CONCURRENCY_REFUSAL in text
                     else "rate refusal" if RATE_REFUSAL in text else "error"] += 1

    await asyncio.gather(*(one(client) for client in clients))
    return {"latencies": latencies, "outcomes": outcomes, "seconds": seconds}


def summary(slices: list[dict]) -> dict:
    latencies = [value for piece in slices for value in piece["latencies"]]
    outcomes = sum((piece["outcomes"] for piece in slices), Counter())
    seconds = sum(piece["seconds"] for piece in slices)
    return {"calls_per_s": sum(outcomes.values()) / seconds, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "outcomes": dict(outcomes)}


async def open_clients(stack: AsyncExitStack, server, count: int, prefix: str) -> list[RawMcpClient]:
    """`count` sessions, each its own principal where auth is on, opened concurrently."""
    clients = [RawMcpClient(server.url, server.headers(f"{prefix}-{number}")) for number in range(count)]
    await asyncio.gather(*(client.__aenter__() for client in clients))
    for client in clients:
        stack.push_async_exit(client.__aexit__)
    return clients


async def measure(servers, slice_s: float, slices: int) -> dict:
    results: dict = {"trivial": {}, "upstreams": {}}
    for level in LEVELS:
        async with AsyncExitStack() as stack:
            sides = {kind: await open_clients(stack, servers[kind], level, f"sat{level}") for kind in ("bare", "full")}
            await closed_loop(sides["bare"], ECHO, 0.5)  # warm both
            await closed_loop(sides["full"], ECHO, 0.5)
            pieces: dict[str, list[dict]] = {kind: [] for kind in sides}
            for index in range(slices * 2):
                kind = ("bare", "full")[index % 2] if index // 2 % 2 == 0 else ("full", "bare")[index % 2]
                pieces[kind].append(await closed_loop(sides[kind], ECHO, slice_s))
            results["trivial"][level] = {kind: summary(parts) for kind, parts in pieces.items()}
            for name, call in UPSTREAM_CALLS.items():
                results["upstreams"].setdefault(name, {})[level] = summary(
                    [await closed_loop(sides["full"], call, slice_s * slices)])
        print(f"  saturation: {level} clients done", flush=True)
    return results


def run(slice_s: float, slices: int = 2) -> dict:
    with scratch_dir("saturation") as scratch, upstreams(Path(scratch)) as env, \
            compared_servers(env, Path(scratch) / "servers", kinds=("bare", "full")) as servers:
        return asyncio.run(measure(servers, slice_s, slices))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--slices", type=int, default=2, help="slices per side and level")
    args = parser.parse_args()
    results = run(args.slice, args.slices)
    for level, sides in results["trivial"].items():
        bare, full = sides["bare"], sides["full"]
        print(f"echo x{level:<3} bare {bare['calls_per_s']:.0f}/s p99 {bare['p99_ms']:.1f} ms | full "
              f"{full['calls_per_s']:.0f}/s p99 {full['p99_ms']:.1f} ms | ratio {full['calls_per_s'] / bare['calls_per_s']:.2f}x")
    for name, levels in results["upstreams"].items():
        for level, row in levels.items():
            print(f"{name} x{level:<3} {row['calls_per_s']:.0f}/s p99 {row['p99_ms']:.1f} ms {row['outcomes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
