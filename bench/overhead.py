"""Measure the capability stack's overhead: full stack vs bare FastMCP, same tool, one run.

Two servers start as subprocesses on 127.0.0.1, both over real streamable HTTP: one bare FastMCP
server exposing an in-memory `echo` tool, and the same tool behind bearer auth (dev issuer token),
the policy, audit (to a temp file, with checkpoints), quotas, concurrency slots and a breaker.
Calls alternate between the two so that machine noise hits both alike.

    python bench/overhead.py --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_POLICY = """
[global]
per_minute = 1000000
burst = 100000

[upstreams.github]
max_concurrency = 64
breaker_failures = 5
breaker_cooldown_s = 30
timeout_s = 10

[tools.echo]
class = "read"
scopes = ["mcp:read"]
confirm = false
upstream = "github"
quota = { per_principal_per_minute = 1000000, burst = 100000 }
"""
WARMUP_CALLS = 50
TARGET_RATIO = 1.10


def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def _bare_app():
    from fastmcp import FastMCP

    server = FastMCP("bench-bare")
    server.tool(echo)
    return server.http_app(path="/mcp")


def _full_app(state: Path, audience: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fastmcp import FastMCP

    from app.audit.log import AuditLog, AuditSigner
    from app.auth.resource_server import protect_app
    from app.auth.settings import AuthSettings
    from app.middleware.breakers import Breakers
    from app.capability_policy import parse_policy
    from app.auth.principal import PrincipalProvider
    from app.audit.redaction import Redactor
    from app.middleware.stack import build_middleware

    policy = parse_policy(BENCH_POLICY, "bench-policy")
    audit = AuditLog(state / "audit.jsonl", AuditSigner(Ed25519PrivateKey.generate()))
    middleware = build_middleware(
        policy, (), audit=audit, redactor=Redactor(["bench-canary-secret"]), breakers=Breakers(policy.upstreams),
        principals=PrincipalProvider(auth_enabled=True))
    server = FastMCP("bench-full", middleware=middleware)
    server.tool(echo)
    settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": "dev", "MCP_AUTH_AUDIENCE": audience},
                                     dev_state_dir=state / "dev-issuer")
    return protect_app(server.http_app(path="/mcp"), settings)


def _serve(kind: str, port: int, state: Path) -> None:
    import uvicorn

    audience = f"http://127.0.0.1:{port}/mcp"
    app = _bare_app() if kind == "bare" else _full_app(state, audience)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


async def _measure(urls: dict[str, str], headers: dict[str, dict[str, str]], calls: int) -> dict[str, list[float]]:
    from contextlib import AsyncExitStack

    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    samples: dict[str, list[float]] = {name: [] for name in urls}
    async with AsyncExitStack() as stack:
        sessions = {}
        for name, url in urls.items():
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=headers[name]))
            read, write = await stack.enter_async_context(streamable_http_client(url, http_client=client))
            sessions[name] = await stack.enter_async_context(ClientSession(read, write))
            await sessions[name].initialize()
        for index in range(WARMUP_CALLS + calls):
            # Alternate which server goes first, so neither always runs on a warmer machine.
            order = list(sessions) if index % 2 == 0 else list(reversed(sessions))
            for name in order:
                started = time.perf_counter()
                result = await sessions[name].call_tool("echo", {"text": f"hello {index}"})
                elapsed = time.perf_counter() - started
                if result.is_error:
                    raise RuntimeError(f"{name} call failed: {result.content}")
                if index >= WARMUP_CALLS:
                    samples[name].append(elapsed)
    return samples


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per server: p50/p95/p99 and mean in ms, and throughput in calls/s (sequential calls)."""
    return {name: {"p50": _percentile(values, 0.50) * 1000, "p95": _percentile(values, 0.95) * 1000,
                   "p99": _percentile(values, 0.99) * 1000, "rps": len(values) / sum(values),
                   "mean": statistics.fmean(values) * 1000, "n": len(values)}
            for name, values in samples.items()}


def _report(stats: dict[str, dict[str, float]]) -> None:
    for name, row in stats.items():
        print(f"{name:>5}: p50 {row['p50']:.2f} ms  p99 {row['p99']:.2f} ms  "
              f"throughput {row['rps']:.0f} calls/s  (n={row['n']})")
    for metric in ("p50", "p99"):
        ratio = stats["full"][metric] / stats["bare"][metric]
        verdict = "ok" if ratio <= TARGET_RATIO else f"above the {TARGET_RATIO:.2f}x target"
        print(f"ratio full/bare {metric}: {ratio:.3f}x ({verdict})")
    print(f"ratio full/bare throughput: {stats['full']['rps'] / stats['bare']['rps']:.3f}x")


def run(calls: int) -> dict[str, list[float]]:
    """Start both servers, measure `calls` alternating calls on each, stop them; returns seconds per call."""
    with tempfile.TemporaryDirectory() as state_dir:
        state = Path(state_dir)
        ports = {"bare": _free_port(), "full": _free_port()}
        processes = {name: subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port),
                                             "--state", state_dir], cwd=ROOT)
                     for name, port in ports.items()}
        try:
            for name, port in ports.items():
                _wait_for(port, processes[name])
            from app.auth.dev_issuer import DevIssuer

            token = DevIssuer(state / "dev-issuer").mint(scopes=["mcp:read"], audience=f"http://127.0.0.1:{ports['full']}/mcp")
            urls = {name: f"http://127.0.0.1:{port}/mcp" for name, port in ports.items()}
            headers = {"bare": {}, "full": {"Authorization": f"Bearer {token}"}}
            return asyncio.run(_measure(urls, headers, calls))
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="measured calls per server")
    parser.add_argument("--serve", choices=("bare", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, Path(args.state))
        return 0

    _report(summarize(run(args.calls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
