"""`make load`: many concurrent MCP sessions of mixed tool calls, then audit completeness, then a SIGTERM run.

Each session is its own principal (a dev-issuer token with its own `sub`), so per-principal
quotas apply as in production; the policy's quotas are realistic, so some calls are denied, and
those denials are counted apart from errors. Calls mix GitHub search (stand-in), SELECTs on a real
Postgres, and attestation_status. Every call carries a unique marker (a search qualifier, an SQL
comment, a nonce) so that it can be matched to its audit line.

    python bench/load.py --sessions 200 --calls 50
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (ROOT, BenchServer, audit_records, latency_summary, scratch_dir, upstreams,  # noqa: E402
                     verify_audit)

from tests.support.mcp_client import mcp_session  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "load.json"
LOAD_POLICY = """
[global]
per_minute = 100000
burst = 2000

# The run measures quotas, not the refusal budget: every session's quota denials stay within its own
# refusal burst, and the server-wide refusal budget is out of the way.
[refusals]
per_principal_per_minute = 60
burst = 40
global_per_minute = 1000000
global_burst = 100000

[upstreams.github]
max_concurrency = 32
breaker_failures = 20
breaker_cooldown_s = 10
timeout_s = 15
queue_s = 2

[upstreams.postgres]
max_concurrency = 8
breaker_failures = 20
breaker_cooldown_s = 10
timeout_s = 10
queue_s = 2

[upstreams.attestation]
max_concurrency = 8
breaker_failures = 20
breaker_cooldown_s = 10
timeout_s = 20
queue_s = 1

# A session makes 20 searches and 20 queries: the burst of 15 plus the refill is deliberately
# not quite enough, so every run sees some per-principal quota denials.
[tools.github_search_issues]
class = "read"
scopes = ["mcp:read"]
confirm = false
upstream = "github"
quota = { per_principal_per_minute = 6, burst = 15 }

[tools.query_database]
class = "read"
scopes = ["mcp:read"]
confirm = false
upstream = "postgres"
quota = { per_principal_per_minute = 6, burst = 15 }

[tools.attestation_status]
class = "read"
scopes = ["mcp:read"]
confirm = false
upstream = "attestation"
quota = { per_principal_per_minute = 60, burst = 20 }
"""
RATE_DENIAL = "rate limit"
CONCURRENCY_DENIAL = "too many concurrent calls"
PROGRESS_EVERY_S = 10.0


def planned_call(session_no: int, index: int) -> tuple[str, dict, str]:
    """The index-th call of a session: tool, arguments, and the marker its audit line will carry."""
    marker = f"s{session_no:05d}c{index:05d}"
    kind = index % 5
    if kind in (0, 1):
        # The stand-in ignores `word:value` terms, so the marker does not change what is found.
        query = f"login run:{marker}"
        return "github_search_issues", {"query": query, "max_results": 5}, query
    if kind in (2, 3):
        sql = f"SELECT id, title, state FROM issues WHERE id > {index * 5} ORDER BY id LIMIT 10 /* {marker} */"
        return "query_database", {"sql": sql, "max_rows": 10}, hashlib.sha256(sql.encode()).hexdigest()
    nonce = f"load-{marker}"
    return "attestation_status", {"nonce": nonce}, nonce


def audit_marker(record: dict) -> str | None:
    """The marker of one audit `call` line (see `planned_call`)."""
    tool = record.get("tool")
    if tool == "query_database":
        return (record.get("summary") or {}).get("sql_sha256")
    args = record.get("args") or {}
    return args.get("query") if tool == "github_search_issues" else args.get("nonce")


@dataclass
class Tally:
    """What the clients saw."""

    made: int = 0
    ok_latencies: list[float] = field(default_factory=list)
    all_latencies: list[float] = field(default_factory=list)
    denials: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    responded: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.all_latencies)

    def record(self, result, elapsed: float, marker: str) -> None:
        self.all_latencies.append(elapsed)
        self.responded.append(marker)
        text = " ".join(part.text for part in result.content if getattr(part, "text", None))
        if not result.is_error:
            self.ok_latencies.append(elapsed)
        elif RATE_DENIAL in text:
            self.denials["rate limit"] += 1
        elif CONCURRENCY_DENIAL in text:
            self.denials["concurrency cap"] += 1
        else:
            self.errors[f"tool error: {text[:80]}"] += 1


async def run_session(server: BenchServer, session_no: int, calls: int, tally: Tally) -> None:
    try:
        async with mcp_session(server.url, headers=server.bearer(f"load-agent-{session_no}")) as session:
            for index in range(calls):
                tool, arguments, marker = planned_call(session_no, index)
                tally.made += 1
                started = time.perf_counter()
                result = await session.call_tool(tool, arguments)
                tally.record(result, time.perf_counter() - started, marker)
    except Exception as exc:  # a dead session ends; the error is counted, the run goes on
        tally.errors[f"session: {type(exc).__name__}"] += 1


async def progress(tally: Tally, total: int, started: float) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        elapsed = time.monotonic() - started
        print(f"  {elapsed:5.0f} s: {tally.answered}/{total} calls answered ({tally.answered / elapsed:.0f}/s)", flush=True)


async def drive(server: BenchServer, sessions: int, calls: int, deadline_s: float, *, sigterm_at: float | None = None) -> Tally:
    """Run every session concurrently; optionally SIGTERM the server once `sigterm_at` of the calls are answered."""
    tally = Tally()
    total = sessions * calls
    started = time.monotonic()
    reporter = asyncio.create_task(progress(tally, total, started))
    killer = asyncio.create_task(_sigterm_when(server, tally, int(total * sigterm_at))) if sigterm_at else None
    try:
        await asyncio.wait_for(asyncio.gather(*(run_session(server, n, calls, tally) for n in range(sessions))), deadline_s)
    finally:
        for task in (reporter, killer):
            if task is not None:
                task.cancel()
    tally.wall_s = time.monotonic() - started
    return tally


async def _sigterm_when(server: BenchServer, tally: Tally, answered: int) -> None:
    while tally.answered < answered:
        await asyncio.sleep(0.05)
    print(f"  SIGTERM to the server after {tally.answered} answered calls", flush=True)
    os.kill(server.pid, signal.SIGTERM)


def audit_check(server: BenchServer, tally: Tally, public_key: str, *, all_calls: bool) -> dict:
    """Line counts, torn lines, the chain, and whether every answered call has its audit line."""
    records, torn = audit_records(server.audit_path)
    calls = [record for record in records if record.get("type") == "call"]
    audited = Counter(audit_marker(record) for record in calls)
    missing = sum((Counter(tally.responded) - audited).values())
    ok, message = verify_audit(server.audit_path, public_key)
    report = {"audit_call_lines": len(calls), "calls_made": tally.made, "torn_lines": torn,
              "answered_without_audit_line": missing, "chain_verifies": ok, "verify_message": message}
    report["complete"] = (missing == 0 and torn == 0 and ok
                          and (len(calls) == tally.made if all_calls else True))
    return report


def summary(tally: Tally, server_status: dict[str, int]) -> dict:
    return {"calls_made": tally.made, "answered": tally.answered, "ok": len(tally.ok_latencies),
            "quota_denials": dict(tally.denials), "errors": dict(tally.errors), "wall_s": round(tally.wall_s, 1),
            "throughput_per_s": round(tally.answered / tally.wall_s, 1), "latency_ms_all": latency_summary(tally.all_latencies),
            "latency_ms_ok": latency_summary(tally.ok_latencies), "server_peak_rss_mib": round(server_status["VmHWM"] / 1024, 1)}


def print_run(title: str, result: dict) -> None:
    print(f"\n== {title} ==")
    print(json.dumps(result, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--calls", type=int, default=50, help="calls per session")
    parser.add_argument("--deadline", type=float, default=900, help="seconds before a run is abandoned")
    parser.add_argument("--sigterm-sessions", type=int, default=50, help="sessions in the SIGTERM run")
    args = parser.parse_args()
    failures: list[str] = []
    with scratch_dir("load") as scratch:
        workdir = Path(scratch)
        with upstreams(workdir) as env:
            server = BenchServer(env, workdir / "run", LOAD_POLICY).start()
            public_key = server.health()["audit_public_key"]
            print(f"load: {args.sessions} sessions x {args.calls} calls against {server.url}", flush=True)
            try:
                tally = asyncio.run(drive(server, args.sessions, args.calls, args.deadline))
                status = server.proc_status()
            finally:
                server.stop()
            load = summary(tally, status)
            load["audit"] = audit_check(server, tally, public_key, all_calls=True)
            print_run("load", load)
            if tally.errors:
                failures.append(f"{sum(tally.errors.values())} errors")
            if not load["audit"]["complete"]:
                failures.append("audit incomplete after the load run")

            server = BenchServer(env, workdir / "sigterm", LOAD_POLICY).start()
            public_key = server.health()["audit_public_key"]
            print(f"\nsigterm: {args.sigterm_sessions} sessions x {args.calls} calls, SIGTERM halfway", flush=True)
            try:
                tally = asyncio.run(drive(server, args.sigterm_sessions, args.calls, args.deadline, sigterm_at=0.5))
                exit_code = server.wait_exit()
            finally:
                server.stop()
            sigterm = {"answered_before_exit": tally.answered, "exit_code": exit_code,
                       "audit": audit_check(server, tally, public_key, all_calls=False)}
            print_run("sigterm", sigterm)
            if sigterm["audit"]["answered_without_audit_line"]:
                failures.append("a call answered before SIGTERM has no audit line")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load": load, "sigterm": sigterm}, indent=2))
    print("\nFAIL: " + "; ".join(failures) if failures else "\nPASS: no errors, audit complete in both runs")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
