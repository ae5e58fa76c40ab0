"""Shared bench plumbing: a throwaway Postgres, stand-ins in their own process, the server, /proc readings.

Everything listens on 127.0.0.1. The stand-ins run in a separate process so that their work
does not share the load generator's interpreter lock; the server is the real `mcp-tee serve`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.auth.dev_issuer import DevIssuer  # noqa: E402
from app.devstack.postgres import LocalPostgres, free_port  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402

STANDIN_START_S = 15.0
WEBHOOK_PATH = "/hooks/bench/" + "x" * 24


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99 and mean in milliseconds, plus the count."""
    return {"n": len(seconds), **{f"p{int(q * 100)}": percentile(seconds, q) * 1000 for q in (0.50, 0.95, 0.99)},
            "mean": (sum(seconds) / len(seconds) * 1000) if seconds else 0.0}


@contextlib.contextmanager
def local_postgres(workdir: Path) -> Iterator[tuple[LocalPostgres, str]]:
    """A fresh cluster with the demo schema; yields it and the least-privilege reader's DSN."""
    workdir.chmod(0o755)  # the unprivileged Postgres user must reach the cluster directory
    cluster = LocalPostgres(workdir / "pg")
    cluster.start()
    try:
        yield cluster, cluster.provision_demo(reader_password=secrets.token_urlsafe(18))
    finally:
        cluster.stop()


@contextlib.contextmanager
def standins(github_token: str) -> Iterator[dict[str, str]]:
    """GitHub stand-in and webhook sink in a child process; yields their URLs."""
    child = subprocess.Popen([sys.executable, __file__, "--serve-standins"], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "BENCH_GITHUB_TOKEN": github_token})
    try:
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("the stand-ins did not start")
        yield json.loads(line)
    finally:
        child.stdin.close()
        child.wait(STANDIN_START_S)


def _serve_standins() -> None:
    from app.devstack.standins import GitHubStandIn, WebhookSink
    from app.devstack.threaded import ThreadedServer

    github = GitHubStandIn(tokens={os.environ["BENCH_GITHUB_TOKEN"]})
    sink = WebhookSink(path=WEBHOOK_PATH)
    with ThreadedServer(github.app) as github_server, ThreadedServer(sink.app) as sink_server:
        print(json.dumps({"github": github_server.url, "webhook": sink_server.url + WEBHOOK_PATH}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin


@contextlib.contextmanager
def upstreams(workdir: Path) -> Iterator[dict[str, str]]:
    """Postgres and both stand-ins; yields the server env whose secrets point at them."""
    token = "ghp_bench" + secrets.token_hex(16)
    with local_postgres(workdir) as (_, reader_dsn), standins(token) as urls:
        yield {"GITHUB_TOKEN": token, "GITHUB_API_URL": urls["github"], "DB_CONNECTION_STRING": reader_dsn,
               "WEBHOOK_URL": urls["webhook"]}


class BenchServer(ServerProcess):
    """`mcp-tee serve` with the dev issuer on, so every call pays for bearer verification.

    Args:
        env: Upstream env from `upstreams`.
        workdir: Holds the policy, the audit log, the issuer keys and the server log.
        policy_text: The capability policy to run under.
    """

    def __init__(self, env: dict[str, str], workdir: Path, policy_text: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "capabilities.toml").write_text(policy_text)
        self.audit_path = workdir / "audit.jsonl"
        super().__init__({**env, "MCP_CAPABILITY_POLICY": str(workdir / "capabilities.toml"),
                          "MCP_AUDIT_LOG": str(self.audit_path), "MCP_AUTH_ISSUER": "dev",
                          "MCP_DEV_ISSUER_DIR": str(workdir / "issuer"), "MCP_LOG_LEVEL": "WARNING"},
                         log_dir=workdir)
        self.set_env(MCP_AUTH_AUDIENCE=self.url)
        self._issuer_dir = workdir / "issuer"

    def bearer(self, subject: str, scopes: tuple[str, ...] = ("mcp:read",)) -> dict[str, str]:
        token = DevIssuer(self._issuer_dir).mint(scopes=list(scopes), audience=self.url, subject=subject)
        return {"Authorization": f"Bearer {token}"}

    def health(self) -> dict:
        return httpx.get(f"{self.base_url}/healthz", timeout=5).json()

    def proc_status(self) -> dict[str, int]:
        """VmRSS / VmHWM (KiB) and Threads from /proc, plus the open fd count."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "Threads"):
                fields[name] = int(value.split()[0])
        fields["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        return fields


class ComparedServer:
    """One of `bench/servers.py`'s servers in its own process.

    Args:
        kind: `bare`, `full` or `reference`.
        env: Environment on top of this process's (upstream secrets, auth, audit, policy).
        log_path: Where its output goes.
    """

    def __init__(self, kind: str, env: dict[str, str], log_path: Path, port: int) -> None:
        self.kind = kind
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self._log = open(log_path, "wb")
        self._process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "servers.py"), "--kind", kind,
                                          "--port", str(port)], cwd=ROOT, env={**os.environ, **env},
                                         stdout=self._log, stderr=subprocess.STDOUT)
        self.issuer: DevIssuer | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self, deadline_s: float = 60.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"bench server {self.kind} exited with {self._process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"bench server {self.kind} did not start")

    def headers(self, subject: str = "bench") -> dict[str, str]:
        """A bearer token for `subject` where auth is on; nothing elsewhere."""
        if self.issuer is None:
            return {}
        token = self.issuer.mint(scopes=["mcp:read"], audience=self.url, subject=subject)
        return {"Authorization": f"Bearer {token}"}

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(15)
        self._log.close()


@contextlib.contextmanager
def compared_servers(upstream_env: dict[str, str], workdir: Path, kinds=("bare", "full", "reference")
                     ) -> Iterator[dict[str, ComparedServer]]:
    """Start the compared servers side by side; yields them by kind."""
    import tomli_w

    from servers import bench_policy

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "capabilities.toml").write_text(tomli_w.dumps(bench_policy()))
    started: dict[str, ComparedServer] = {}
    try:
        for kind in kinds:
            port = free_port()
            env = dict(upstream_env)
            if kind == "full":
                env.update({"MCP_AUTH_ISSUER": "dev", "MCP_AUTH_AUDIENCE": f"http://127.0.0.1:{port}/mcp",
                            "MCP_DEV_ISSUER_DIR": str(workdir / "issuer"), "MCP_AUDIT_LOG": str(workdir / "audit.jsonl"),
                            "MCP_CAPABILITY_POLICY": str(workdir / "capabilities.toml"), "MCP_LOG_LEVEL": "WARNING"})
            started[kind] = ComparedServer(kind, env, workdir / f"{kind}.log", port)
        for server in started.values():
            server.wait_ready()
        if "full" in started:
            started["full"].issuer = DevIssuer(workdir / "issuer")
        yield started
    finally:
        for server in started.values():
            server.stop()


def verify_audit(path: Path, public_key: str) -> tuple[bool, str]:
    """Run the real `mcp-tee audit verify`; returns (ok, its message)."""
    result = subprocess.run([sys.executable, "-m", "app.cli", "audit", "verify", str(path), "--public-key", public_key],
                            capture_output=True, text=True, cwd=ROOT)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def audit_records(path: Path) -> tuple[list[dict], int]:
    """Parsed audit lines and the number of torn (unparseable or unterminated) lines."""
    data = path.read_bytes()
    torn = 0 if data.endswith(b"\n") or not data else 1
    records = []
    for line in data.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            torn += 1
    return records, torn


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=f"mcp-tee-{prefix}-")


if __name__ == "__main__" and sys.argv[1:] == ["--serve-standins"]:
    _serve_standins()
