"""The attested channel's two costs: the pre-auth attestation route, and TLS vs plain HTTP per call.

1. Route: a TEE-mode `mcp-tee serve` against the emulator; on one warm pinned connection, calls
   alternate between `GET /healthz` (no attestation) and `GET /.well-known/mcp-attestation?nonce=`
   (an MAA round trip through the emulator's sidecar, then the server verifies its own token).
2. TLS vs plain: the same FastMCP `echo` tool served twice on loopback, once over plain HTTP and once
   over TLS 1.3 with an in-memory key (`TlsChannel`), each server in its own process, calls
   alternating so machine noise hits both alike, measured in one run. "Warm": JSON-RPC `tools/call`
   POSTs on one kept-alive connection per side (the server in stateless JSON mode), so the ratio is
   the per-call cost of TLS itself. "Official client": one `ClientSession` per side against the
   default (SSE) app; the SDK opens a new connection for each POST, so every TLS call pays a
   handshake too.

    python bench/channel.py --rounds 200
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import latency_summary  # noqa: E402

from app.agent.pinning import ChannelPin, pinned_async_client  # noqa: E402
from app.attestation.channel import TlsChannel  # noqa: E402
from app.devstack.postgres import free_port  # noqa: E402
from app.emulator.server import start_emulator  # noqa: E402
from app.wire.tls_binding import ATTESTATION_ROUTE  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402
from tests.support.tee import tee_endpoints  # noqa: E402

CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee channel bench\n').decode()
CLIENT_ID = "5b1f0c3e-7a2d-4e8f-9c61-3d4b2a1f0e9d"
WARMUP_ROUNDS = 10
SERVER_START_S = 20.0


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


def _echo_app(*, stateless_json: bool):
    from fastmcp import FastMCP

    server = FastMCP("bench-channel")

    @server.tool
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    # Stateless JSON answers let one connection carry every raw call; the default streams SSE, as served.
    if stateless_json:
        return server.http_app(path="/mcp", json_response=True, stateless_http=True)
    return server.http_app(path="/mcp")


def _client(url: str, pin: ChannelPin):
    import httpx2

    return pinned_async_client(pin, timeout=30) if url.startswith("https") else httpx2.AsyncClient(timeout=30)


async def _warm_samples(urls: dict[str, str], pin: ChannelPin, rounds: int) -> dict[str, list[float]]:
    from contextlib import AsyncExitStack

    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    samples: dict[str, list[float]] = {f"{name}, warm": [] for name in urls}
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(_client(url, pin)) for name, url in urls.items()}
        for index in range(WARMUP_ROUNDS + rounds):
            for name, url in urls.items():
                call = {"jsonrpc": "2.0", "id": index, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": "x" * 64}}}
                started = time.perf_counter()
                response = await clients[name].post(url, json=call, headers=headers)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if index >= WARMUP_ROUNDS:
                    samples[f"{name}, warm"].append(elapsed)
    return samples


async def _call_samples(urls: dict[str, str], pin: ChannelPin, rounds: int) -> dict[str, list[float]]:
    from contextlib import AsyncExitStack

    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    samples: dict[str, list[float]] = {f"{name}, official client": [] for name in urls}
    async with AsyncExitStack() as stack:
        sessions = {}
        for name, url in urls.items():
            http = await stack.enter_async_context(_client(url, pin))
            read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
            sessions[name] = await stack.enter_async_context(ClientSession(read, write))
            await sessions[name].initialize()
        for index in range(WARMUP_ROUNDS + rounds):
            for name, session in sessions.items():
                started = time.perf_counter()
                await session.call_tool("echo", {"text": "x" * 64})
                if index >= WARMUP_ROUNDS:
                    samples[f"{name}, official client"].append(time.perf_counter() - started)
    return samples


@contextlib.contextmanager
def _echo_server(*, tls: bool, stateless_json: bool) -> Iterator[tuple[str, str | None]]:
    """The echo app in its own process (so it shares no interpreter lock with the client): URL, SPKI hash."""
    port = free_port()
    args = [sys.executable, __file__, "--serve", str(port)] + (["--tls"] if tls else []) + \
        (["--stateless-json"] if stateless_json else [])
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        spki = child.stdout.readline().strip() or None
        deadline = time.monotonic() + SERVER_START_S
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the echo server did not start")
            time.sleep(0.05)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/mcp", (spki if tls else None)
    finally:
        child.terminate()
        child.wait(SERVER_START_S)


def _serve(port: int, tls: bool, stateless_json: bool) -> None:
    import uvicorn

    channel = TlsChannel.generate() if tls else None
    print(channel.spki_sha256 if channel else "", flush=True)
    options = {"ssl_context_factory": channel.uvicorn_ssl_context_factory} if channel else {}
    uvicorn.run(_echo_app(stateless_json=stateless_json), host="127.0.0.1", port=port, log_level="warning", **options)


def tls_vs_plain(rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {}
    for stateless_json, measure in ((True, _warm_samples), (False, _call_samples)):
        with _echo_server(tls=False, stateless_json=stateless_json) as (plain, _), \
                _echo_server(tls=True, stateless_json=stateless_json) as (secure, spki):
            urls = {"plain HTTP": plain, "TLS 1.3, pinned": secure}
            samples.update(asyncio.run(measure(urls, ChannelPin(spki), rounds)))
    return {name: latency_summary(values) for name, values in samples.items()}


def run(rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    return {"route": route_cost(rounds), "tls": tls_vs_plain(rounds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stateless-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.tls, args.stateless_json)
        return 0
    for section, rows in run(args.rounds).items():
        for name, row in rows.items():
            print(f"{section:>5} {name:>24}: p50 {row['p50']:.3f} ms  p99 {row['p99']:.3f} ms  (n={row['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
