"""TEE-mode start-up against the emulator: process start to ready with every secret unsealed, vs env mode.

"Ready" means `/healthz` answers and lists all three secret-backed tools as enabled. In TEE mode
that takes an MAA token from the (emulated) SKR sidecar, the key release against the release
policy, the managed-identity token, three sealed secrets read from the TLS vault stand-in and
unsealed in memory. The env-mode baseline reads the same three values from plaintext env.
Starts alternate between the modes.

    python bench/tee_startup.py --starts 5
"""

from __future__ import annotations

import argparse
import base64
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import scratch_dir  # noqa: E402

import httpx  # noqa: E402

from app.emulator.server import start_emulator  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402

CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee bench start-up\n').decode()
CLIENT_ID = "0f0e0d0c-0b0a-0908-0706-050403020100"
SECRET_TOOLS = frozenset({"github_search_issues", "query_database", "send_notification"})
READY_TIMEOUT_S = 60.0
POLL_S = 0.01
# Pools and clients open lazily, so these need not answer during start-up.
BASELINE = {"github-token": "ghp_bench" + secrets.token_hex(16),
            "db-connection-string": "postgresql://mcp_reader:bench@127.0.0.1:9/mcp_demo",
            "webhook-url": "http://127.0.0.1:9/hooks/bench"}
ENV_NAMES = {"github-token": "GITHUB_TOKEN", "db-connection-string": "DB_CONNECTION_STRING", "webhook-url": "WEBHOOK_URL"}


def time_to_ready(env: dict[str, str], log_dir: Path) -> float:
    server = ServerProcess({**env, "MCP_AUDIT_LOG": str(log_dir / f"audit-{time.monotonic_ns()}.jsonl")}, log_dir=log_dir)
    started = time.perf_counter()
    server.start(wait=False)
    try:
        deadline = started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if not server.alive():
                raise RuntimeError(f"server exited during start-up:\n{server.output()[-1500:]}")
            try:
                body = httpx.get(f"{server.base_url}/healthz", timeout=1, verify=False).json()  # readiness only
                if SECRET_TOOLS <= set(body.get("tools_enabled", [])):
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(POLL_S)
        raise RuntimeError("server not ready in time")
    finally:
        server.stop()


def run(starts: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {"env mode": [], "TEE mode (emulator)": []}
    with scratch_dir("tee-startup") as scratch, start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID) as emulator:
        for name, value in BASELINE.items():
            emulator.put_sealed_secret(name, value.encode())
        tee = {"MCP_TEE_MODE": "tee", "SKR_ENDPOINT": emulator.sidecar_url, "MAA_ENDPOINT": emulator.maa_endpoint,
               "MAA_ISSUER": emulator.issuer, "AKV_ENDPOINT": emulator.akv_endpoint, "AKV_CA_FILE": str(emulator.ca_file),
               "SKR_KEY_NAME": emulator.key_name, "IDENTITY_CLIENT_ID": CLIENT_ID, **emulator.identity_env}
        plain = {ENV_NAMES[name]: value for name, value in BASELINE.items()}
        for _ in range(starts):
            samples["env mode"].append(time_to_ready(plain, Path(scratch)))
            samples["TEE mode (emulator)"].append(time_to_ready(tee, Path(scratch)))
    return {name: {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values), "n": len(values)}
            for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="starts per mode")
    args = parser.parse_args()
    stats = run(args.starts)
    for name, row in stats.items():
        print(f"{name:>20}: median {row['median_s']:.2f} s  (min {row['min_s']:.2f}, max {row['max_s']:.2f}, n={row['n']})")
    print(f"ratio TEE/env: {stats['TEE mode (emulator)']['median_s'] / stats['env mode']['median_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
