"""Render `docs/benchmarks.md` and `docs/benchmarks-latency.png` from one run's figures."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks-latency.png"
LOAD_RESULTS = ROOT / "bench" / "results" / "load.json"
SOAK_RESULTS = ROOT / "bench" / "results" / "soak.json"
PERCENTILES = ("p50", "p95", "p99")


def machine() -> dict[str, str]:
    """nproc, CPU model and RAM, read from this machine."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
            "python": platform.python_version(), "kernel": platform.release(),
            "load": " ".join(f"{value:.2f}" for value in os.getloadavg())}


def chart(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("Tool call over HTTP", results["overhead"]), ("query_database path", results["pool"]),
              ("MAA token verification", results["verifier"])]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 4.2))
    for axis, (title, stats) in zip(axes, panels):
        names = list(stats)
        width = 0.8 / len(names)
        for offset, name in enumerate(names):
            positions = [index + offset * width for index in range(len(PERCENTILES))]
            bars = axis.bar(positions, [stats[name][p] for p in PERCENTILES], width, label=name)
            axis.bar_label(bars, fmt="%.1f", fontsize=7)
        axis.set_xticks([index + width * (len(names) - 1) / 2 for index in range(len(PERCENTILES))], PERCENTILES)
        axis.set_title(title)
        axis.set_ylabel("latency (ms)")
        axis.legend(fontsize=8)
    figure.suptitle("Latency percentiles: the stack and its baselines (one run, loopback, same machine)")
    figure.tight_layout()
    figure.savefig(CHART, dpi=110)
    plt.close(figure)


def _rows(stats: dict, baseline: str) -> list[str]:
    lines = ["| path | p50 ms | p95 ms | p99 ms | throughput | ratio p50 | ratio p99 |", "|---|---|---|---|---|---|---|"]
    for name, row in stats.items():
        rps = f"{row['rps']:.0f}/s" if "rps" in row else "–"
        lines.append(f"| {name} | {row['p50']:.2f} | {row['p95']:.2f} | {row['p99']:.2f} | {rps} | "
                     f"{row['p50'] / stats[baseline]['p50']:.2f}x | {row['p99'] / stats[baseline]['p99']:.2f}x |")
    return lines


def _load_section() -> list[str]:
    if not LOAD_RESULTS.exists():
        return ["No `make load` result on this machine yet; run `make load` and then `make bench`."]
    load = json.loads(LOAD_RESULTS.read_text())
    run, sigterm = load["load"], load["sigterm"]
    latency = run["latency_ms_all"]
    return [
        f"Latest `make load` ({run['calls_made']} calls): {run['ok']} succeeded, quota denials "
        f"{run['quota_denials'] or 0}, errors {run['errors'] or 0}; p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms, "
        f"p99 {latency['p99']:.0f} ms; {run['throughput_per_s']} calls/s over {run['wall_s']} s; server peak RSS "
        f"{run['server_peak_rss_mib']} MiB. Audit: {run['audit']['audit_call_lines']} call lines for "
        f"{run['audit']['calls_made']} calls, {run['audit']['torn_lines']} torn, chain verifies: "
        f"{run['audit']['chain_verifies']}. SIGTERM run: {sigterm['answered_before_exit']} answered calls, "
        f"{sigterm['audit']['answered_without_audit_line']} of them without an audit line.",
    ]


def _soak_section() -> list[str]:
    if not SOAK_RESULTS.exists():
        return ["No `make soak` result on this machine yet."]
    soak = json.loads(SOAK_RESULTS.read_text())
    rss = [sample["VmRSS"] / 1024 for sample in soak["samples"]]
    verdict = "passed" if not soak["problems"] else "FAILED: " + "; ".join(soak["problems"])
    return [f"Latest `make soak` ({soak['duration_s']:.0f} s after {soak['warmup_s']:.0f} s warm-up, {soak['workers']} "
            f"workers, {soak['answered']} calls): RSS {min(rss):.1f}-{max(rss):.1f} MiB; idle fds "
            f"{soak['idle_before']['fds']} -> {soak['idle_after']['fds']}, threads {soak['idle_before']['Threads']} -> "
            f"{soak['idle_after']['Threads']}; {verdict}. Not reported by `/healthz` (so not checked): "
            f"{', '.join(soak['not_reported_by_healthz']) or 'nothing'}."]


def _channel_sections(channel: dict | None) -> list[str]:
    if not channel:
        return ["", "## 5. Attestation route", "", "Not measured in this run."]
    route, tls = channel["route"], channel["tls"]
    maa = route["GET attestation route"]["p50"] - route["GET /healthz"]["p50"]
    return [
        "", f"## 5. Attestation route ({route['GET /healthz']['n']} calls each)", "", *_rows(route, "GET /healthz"),
        "", f"The attestation (MAA round trip through the emulator, plus self-verification) adds {maa:.1f} ms at p50 "
        "over a plain request on the same connection; against Azure the MAA round trip itself dominates. "
        "`MCP_ATTESTATION_PER_SECOND` bounds how many of these the unauthenticated route can cause.",
        "", f"## 6. TLS vs plain HTTP per call ({tls['plain HTTP, warm']['n']} calls each)", "",
        *_rows(tls, "plain HTTP, warm"),
        "", f"Ratio TLS/plain on a warm connection (p50): "
        f"{tls['TLS 1.3, pinned, warm']['p50'] / tls['plain HTTP, warm']['p50']:.2f}x. With the official client, "
        "which opens a new connection for each POST, every TLS call also pays a handshake: ratio (p50) "
        f"{tls['TLS 1.3, pinned, official client']['p50'] / tls['plain HTTP, official client']['p50']:.2f}x.",
    ]


def render(results: dict) -> None:
    """Write the markdown and the chart."""
    chart(results)
    host = results["machine"]
    overhead, pool, verifier, startup = results["overhead"], results["pool"], results["verifier"], results.get("tee_startup")
    text = [
        "# Benchmarks",
        "",
        "Regenerate with `make bench` (this whole file and the chart are rewritten from one run). "
        "`make load` and `make soak DURATION=60` are separate and slower; their latest results are summarised below.",
        "",
        "## Machine",
        "",
        f"- {host['cpus']} CPUs: {host['cpu']}; RAM {host['ram']}; Python {host['python']}; Linux {host['kernel']}",
        f"- load average when the run ended: {host['load']} (the machine is shared; read ratios, not absolutes)",
        f"- run at {results['when']}",
        "",
        "## Method",
        "",
        "Everything runs on one machine over loopback: real `uvicorn` servers, the official MCP client over "
        "streamable HTTP, a real PostgreSQL 15 cluster started for the run, and the attestation emulator. "
        "Each comparison is measured in one run with calls alternating between the two sides, so that machine "
        "noise falls on both alike, after a warm-up that is not counted. Percentiles are nearest-rank over "
        "sequential calls; throughput is calls per second of summed call time.",
        "",
        "1. **Capability stack overhead** (`bench/overhead.py`): an in-memory `echo` tool on bare FastMCP vs the same "
        "tool behind bearer auth, policy, audit with signed checkpoints, quotas, concurrency slots and a breaker. "
        "Target: at most 1.10x.",
        "2. **Connection pool** (`bench/pool.py`): the `query_database` path (guard, READ ONLY transaction, `SET LOCAL` "
        "timeouts, server-side cursor) on the pool vs on a new connection per call, the reference sample's design.",
        "3. **Verifier** (`bench/verifier.py`): `verify_maa_token` on an emulator-minted token with a warm `JwksCache` "
        "vs a new cache per call (fetches `/certs` over HTTP and parses the x5c certificate).",
        "4. **TEE start-up** (`bench/tee_startup.py`): process start to `/healthz` listing every secret-backed tool, "
        "in TEE mode against the emulator (MAA token, key release, vault reads, unsealing) vs env mode.",
        "5. **Attestation route** (`bench/channel.py`): on one warm pinned connection to a TEE-mode server, "
        "`GET /.well-known/mcp-attestation?nonce=` (an MAA round trip through the emulator's sidecar, then the "
        "server verifies its own token) alternating with `GET /healthz`.",
        "6. **TLS vs plain HTTP** (`bench/channel.py`): the same `echo` tool served over plain HTTP and over TLS 1.3 "
        "with an in-memory key (the client pinned): raw JSON-RPC calls on one kept-alive connection each (warm), "
        "and one official-client session each (it opens a connection per POST).",
        "",
        "![latency percentiles](benchmarks-latency.png)",
        "",
        f"## 1. Full stack vs bare FastMCP ({overhead['full']['n']} calls each)",
        "",
        *_rows(overhead, "bare"),
        "",
        f"Throughput ratio full/bare: {overhead['full']['rps'] / overhead['bare']['rps']:.2f}x. Verdict against the "
        f"1.10x target (p50): {'met' if overhead['full']['p50'] / overhead['bare']['p50'] <= 1.10 else 'missed'}.",
        "",
        f"## 2. Pool vs a new connection per call ({pool['pool']['n']} calls each)",
        "",
        *_rows(pool, "pool"),
        "",
        f"## 3. MAA token verification ({verifier['warm JWKS cache']['n']} verifications each)",
        "",
        *_rows(verifier, "warm JWKS cache"),
        "",
        "## 4. Start-up to ready",
        "",
    ]
    if startup:
        text += ["| mode | median s | min s | max s | starts |", "|---|---|---|---|---|"]
        text += [f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['max_s']:.2f} | {row['n']} |"
                 for name, row in startup.items()]
        text += ["", f"Ratio TEE/env (median): {startup['TEE mode (emulator)']['median_s'] / startup['env mode']['median_s']:.2f}x."]
    else:
        text += ["Not measured in this run."]
    text += _channel_sections(results.get("channel"))
    text += ["", "## Load and soak", "", *_load_section(), "", *_soak_section(), ""]
    DOC.write_text("\n".join(text))
