"""`make soak DURATION=…`: sustained calls with session churn; fail if memory, fds, threads, tasks or the pool leak.

Workers open a session, make a batch of calls, close it and start over, so that per-session and
per-call leaks both accumulate. Every 10 s the server's RSS, open fds and OS threads are read from
/proc, and `/healthz` is read for the Postgres pool and the asyncio task count when the server
reports them. The checks: RSS after warm-up grows by at most 20%; after the load stops and the
server settles, fds, threads and tasks are back within a small slack of the post-warm-up idle
baseline, and the pool has every connection back with nobody waiting.

    python bench/soak.py --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, BenchServer, scratch_dir, upstreams  # noqa: E402
from load import LOAD_POLICY, Tally, planned_call  # noqa: E402

from tests.support.mcp_client import mcp_session  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "soak.json"
SAMPLE_EVERY_S = 10.0
MAX_RSS_GROWTH = 0.20
SETTLE_S = 3.0
# Idle counts may differ a little run to run (a pooled connection opened late, a worker thread).
FD_SLACK = 12
THREAD_SLACK = 4
TASK_SLACK = 10
CALLS_PER_SESSION = 20
# Quotas are not under test here: the soak runs under the load policy with each worker its own principal,
# and a worker that is denied just moves on; denials and errors are both reported.


async def worker(server: BenchServer, number: int, stop_at: float, tally: Tally) -> None:
    generation = 0
    while time.monotonic() < stop_at:
        generation += 1
        principal = f"soak-{number}-{generation}"
        try:
            async with mcp_session(server.url, headers=server.bearer(principal)) as session:
                for index in range(CALLS_PER_SESSION):
                    tool, arguments, marker = planned_call(number * 100_000 + generation, index)
                    tally.made += 1
                    started = time.perf_counter()
                    result = await session.call_tool(tool, arguments)
                    tally.record(result, time.perf_counter() - started, marker)
        except Exception as exc:
            tally.errors[f"session: {type(exc).__name__}"] += 1


def sample(server: BenchServer, elapsed: float) -> dict:
    health = server.health()
    return {"t_s": round(elapsed), **server.proc_status(), "pool": health.get("pool"), "tasks": health.get("tasks")}


async def load_for(server: BenchServer, seconds: float, workers: int, tally: Tally, samples: list[dict], t0: float) -> None:
    stop_at = time.monotonic() + seconds
    tasks = [asyncio.create_task(worker(server, n, stop_at, tally)) for n in range(workers)]
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(SAMPLE_EVERY_S, max(0.0, stop_at - time.monotonic())))
        snap = await asyncio.to_thread(sample, server, time.monotonic() - t0)
        samples.append(snap)
        print(f"  t={snap['t_s']:4d}s rss={snap['VmRSS'] / 1024:6.1f} MiB fds={snap['fds']:4d} threads={snap['Threads']:3d} "
              f"tasks={snap['tasks']} pool={snap['pool']} answered={tally.answered}", flush=True)
    await asyncio.gather(*tasks)


def idle_sample(server: BenchServer, t0: float) -> dict:
    time.sleep(SETTLE_S)
    return sample(server, time.monotonic() - t0)


def judge(warm: dict, later: list[dict], idle_before: dict, idle_after: dict) -> list[str]:
    """Every way the run can fail, as sentences (empty when it passed)."""
    problems = []
    peak = max(snap["VmRSS"] for snap in later) if later else warm["VmRSS"]
    if peak > warm["VmRSS"] * (1 + MAX_RSS_GROWTH):
        problems.append(f"RSS grew {peak / warm['VmRSS'] - 1:.0%} after warm-up ({warm['VmRSS']} -> {peak} KiB)")
    for name, slack in (("fds", FD_SLACK), ("Threads", THREAD_SLACK), ("tasks", TASK_SLACK)):
        before, after = idle_before.get(name), idle_after.get(name)
        if before is not None and after is not None and after > before + slack:
            problems.append(f"{name} leaked: idle {before} before, {after} after")
    pool = idle_after.get("pool")
    if pool is not None and (pool.get("requests_waiting", 0) or pool.get("pool_available") != pool.get("pool_size")):
        problems.append(f"pool did not get every connection back: {pool}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of sustained load after warm-up")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up (default: a third, 10-60 s)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent sessions")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(60.0, max(10.0, args.duration / 3))
    tally, samples = Tally(), []
    with scratch_dir("soak") as scratch, upstreams(Path(scratch)) as env:
        server = BenchServer(env, Path(scratch) / "run", LOAD_POLICY).start()
        try:
            t0 = time.monotonic()
            print(f"soak: warm-up {warmup:.0f} s, then {args.duration:.0f} s with {args.workers} churning sessions", flush=True)
            asyncio.run(load_for(server, warmup, args.workers, tally, samples, t0))
            idle_before = idle_sample(server, t0)
            warm_samples = len(samples)
            asyncio.run(load_for(server, args.duration, args.workers, tally, samples, t0))
            idle_after = idle_sample(server, t0)
            alive = server.alive()
        finally:
            server.stop()
    problems = judge(samples[warm_samples - 1] if warm_samples else idle_before, samples[warm_samples:],
                     idle_before, idle_after)
    if not alive:
        problems.append("the server died")
    if tally.errors:
        problems.append(f"{sum(tally.errors.values())} errors: {dict(tally.errors)}")
    unobserved = [name for name in ("pool", "tasks") if idle_after.get(name) is None]
    result = {"duration_s": args.duration, "warmup_s": warmup, "workers": args.workers, "answered": tally.answered,
              "quota_denials": dict(tally.denials), "errors": dict(tally.errors), "samples": samples,
              "idle_before": idle_before, "idle_after": idle_after, "not_reported_by_healthz": unobserved,
              "problems": problems}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nidle before: {idle_before}\nidle after:  {idle_after}")
    if unobserved:
        print(f"note: /healthz does not report {', '.join(unobserved)}; those leaks are not checked")
    print("FAIL: " + "; ".join(problems) if problems else "PASS: no growth or leak after warm-up")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
