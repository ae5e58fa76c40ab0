"""The attested channel's two costs: the pre-auth attestation route, and TLS vs plain HTTP per call.

1. Route: a TEE-mode `mcp-tee serve` against the emulator; on one warm pinned connection, calls
   alternate between `GET /healthz` (no attestation) and `GET /.well-known/mcp-attestation?nonce=`
   (an MAA round trip through the emulator's sidecar, then the server verifies its own token).
2. TLS vs plain: the same FastMCP `echo` tool served twice on loopback, once over plain HTTP and once
   over TLS 1.3 with an in-memory key (`TlsChannel`), one official-client session each (a pinned client
   for TLS), calls alternating so machine noise hits both alike; the ratio is TLS/plain on a warm
   connection, measured in one run.

    python bench/channel.py --rounds 200
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import latency_summary  # noqa: E402

from app.agent.pinning import ChannelPin, pinned_async_client  # noqa: E402
from app.attestation.channel import TlsChannel  # noqa: E402
from app.devstack.threaded import ThreadedServer  # noqa: E402
from app.emulator.server import start_emulator  # noqa: E402
from app.wire.tls_binding import ATTESTATION_ROUTE  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402
from tests.support.tee import tee_endpoints  # noqa: E402

CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee channel bench\n').decode()
CLIENT_ID = "5b1f0c3e-7a2d-4e8f-9c61-3d4b2a1f0e9d"
WARMUP_ROUNDS = 10


async def _route_samples(base_url: str, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"GET /healthz": [], "GET attestation route": []}
    async with pinned_async_client(ChannelPin(), timeout=30) as http:
        for index in range(WARMUP_ROUNDS + rounds):
            for name in samples:
                params = {"nonce": secrets.token_urlsafe(24)} if "attestation" in name else None
                path = ATTESTATION_ROUTE if params else "/healthz"
                started = time.perf_counter()
                response = await http.get(base_url + path, params=params)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if index >= WARMUP_ROUNDS:
                    samples[name].append(elapsed)
    return samples


def route_cost(rounds: int) -> dict[str, dict[str, float]]:
    with start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID) as emulator, \
            tempfile.TemporaryDirectory() as log_dir:
        server = ServerProcess(tee_endpoints(emulator, CLIENT_ID), log_dir=Path(log_dir),
                               args=["--no-require-secrets"]).start()
        try:
            samples = asyncio.run(_route_samples(server.base_url, rounds))
        finally:
            server.stop()
    return {name: latency_summary(values) for name, values in samples.items()}


def _echo_app():
    from fastmcp import FastMCP

    server = FastMCP("bench-channel")

    @server.tool
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return server.http_app(path="/mcp")


async def _call_samples(urls: dict[str, str], pin: ChannelPin, rounds: int) -> dict[str, list[float]]:
    from contextlib import AsyncExitStack

    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    samples: dict[str, list[float]] = {name: [] for name in urls}
    async with AsyncExitStack() as stack:
        sessions = {}
        for name, url in urls.items():
            http = pinned_async_client(pin, timeout=30) if url.startswith("https") else httpx2.AsyncClient(timeout=30)
            await stack.enter_async_context(http)
            read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
            sessions[name] = await stack.enter_async_context(ClientSession(read, write))
            await sessions[name].initialize()
        for index in range(WARMUP_ROUNDS + rounds):
            for name, session in sessions.items():
                started = time.perf_counter()
                await session.call_tool("echo", {"text": "x" * 64})
                if index >= WARMUP_ROUNDS:
                    samples[name].append(time.perf_counter() - started)
    return samples


def tls_vs_plain(rounds: int) -> dict[str, dict[str, float]]:
    tls = TlsChannel.generate()
    with ThreadedServer(_echo_app()) as plain, ThreadedServer(_echo_app(), tls=tls) as secure:
        urls = {"plain HTTP": f"{plain.url}/mcp", "TLS 1.3, pinned": f"{secure.url}/mcp"}
        samples = asyncio.run(_call_samples(urls, ChannelPin(tls.spki_sha256), rounds))
    return {name: latency_summary(values) for name, values in samples.items()}


def run(rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    return {"route": route_cost(rounds), "tls": tls_vs_plain(rounds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    for section, rows in run(args.rounds).items():
        for name, row in rows.items():
            print(f"{section:>5} {name:>24}: p50 {row['p50']:.3f} ms  p99 {row['p99']:.3f} ms  (n={row['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
