"""Fault-injection harness: servers with small breakers and short timeouts, and a liveness check."""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from tests.support.canaries import CANARY_WEBHOOK_PATH, assert_no_canary
from tests.support.server_process import ServerProcess

# Short on purpose: every "answered within its timeout" bound in this directory is built from these.
UPSTREAM_TIMEOUT_S = 1.0
MARGIN_S = 1.5
BREAKER_COOLDOWN_S = 0.5
STATE_WAIT_S = BREAKER_COOLDOWN_S + 3.0


def tune_policy(text: str, upstream: str, **fields: float) -> str:
    """Rewrite fields of one `[upstreams.<name>]` section, keeping everything else as it is."""
    section = re.search(rf"^\[upstreams\.{upstream}\]\n(?:[^\[\n].*\n|\n)*", text, flags=re.M)
    if section is None:
        raise ValueError(f"policy has no [upstreams.{upstream}] section")
    block = section.group(0)
    for name, value in fields.items():
        block, replaced = re.subn(rf"^{name} = [^\s#]+", f"{name} = {value}", block, flags=re.M)
        if replaced != 1:
            raise ValueError(f"[upstreams.{upstream}] has no {name}")
    return text[: section.start()] + block + text[section.end():]


FAILURES_TO_OPEN = 2
GITHUB_SLOTS = 3
WEBHOOK_SLOTS = 2


def server_specs(refusing_port: int) -> dict[str, dict]:
    """The servers this suite drives, each with the policy tuning and env its faults need."""
    closed = f"http://127.0.0.1:{refusing_port}"
    fast_breaker = {"breaker_failures": FAILURES_TO_OPEN, "breaker_cooldown_s": BREAKER_COOLDOWN_S,
                    "timeout_s": UPSTREAM_TIMEOUT_S}
    return {
        "breakers": {"tuning": {"github": fast_breaker}},
        # Short queues: the calls over the cap must be refused, not wait for a hung slot.
        "hangs": {"tuning": {"github": {"max_concurrency": GITHUB_SLOTS, "timeout_s": UPSTREAM_TIMEOUT_S,
                                        "queue_s": 0.25},
                             "webhook": {"max_concurrency": WEBHOOK_SLOTS, "queue_s": 0.25}}},
        # GitHub and the webhook point at a port that refuses connections; Postgres is the real one.
        "unreachable": {"tuning": {"postgres": fast_breaker},
                        "env": {"GITHUB_API_URL": closed, "WEBHOOK_URL": f"{closed}{CANARY_WEBHOOK_PATH}"}},
    }


@pytest.fixture(scope="package")
def refusing_port():
    """A loopback port that refuses connections: bound (so nobody else takes it) but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="package")
def fault_servers(baseline_env, roomy_policy, refusing_port, tmp_path_factory) -> dict[str, ServerProcess]:
    """Start every server in `server_specs` at once (start-up dominates this suite's time), stop them at the end."""
    servers: dict[str, ServerProcess] = {}
    try:
        for name, spec in server_specs(refusing_port).items():
            state = tmp_path_factory.mktemp(f"faults-{name}")
            text = roomy_policy.read_text()
            for upstream, fields in spec["tuning"].items():
                text = tune_policy(text, upstream, **fields)
            (state / "capabilities.toml").write_text(text)
            env = {**baseline_env, "MCP_CAPABILITY_POLICY": str(state / "capabilities.toml"),
                   "MCP_UPSTREAM_TIMEOUT_S": str(UPSTREAM_TIMEOUT_S), "MCP_AUDIT_LOG": str(state / "audit.jsonl"),
                   **spec.get("env", {})}
            servers[name] = ServerProcess(env, log_dir=state).start(wait=False)
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def health(server: ServerProcess) -> dict:
    response = httpx.get(f"{server.base_url}/healthz", timeout=2)
    assert response.status_code == 200, response.status_code
    return response.json()


def breaker_state(server: ServerProcess, upstream: str) -> str:
    return health(server)["breakers"][upstream]["state"]


def wait_for_breaker(server: ServerProcess, upstream: str, wanted: str, within_s: float = STATE_WAIT_S) -> None:
    """Poll `/healthz` (not sleep a fixed time) until the breaker reaches `wanted`."""
    deadline = time.monotonic() + within_s
    while (state := breaker_state(server, upstream)) != wanted:
        assert time.monotonic() < deadline, f"{upstream} breaker stayed {state}, never {wanted}"
        time.sleep(0.05)


def assert_serving(server: ServerProcess, *texts: str) -> None:
    """The process is alive, `/healthz` answers, and no canary reached its logs or the given outputs."""
    assert server.alive(), "the server process died"
    health(server)
    assert_no_canary([server.output(), *texts], "the server's logs or tool output")
    assert "Traceback" not in server.output()
