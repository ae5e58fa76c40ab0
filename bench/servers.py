"""The servers `make bench` compares, each in its own process on 127.0.0.1.

- `bare`: FastMCP with one in-memory `echo` tool and nothing else.
- `full`: this server as production builds it: `assemble()` with every middleware, bearer auth
  (dev issuer), the audit log to a file, the packaged capability policy, and the same `echo` tool
  added as one more ToolSpec; served by uvicorn exactly as `mcp-tee serve` does.
- `reference`: the reference sample's described behaviour, reimplemented here (its code is not
  copied): FastMCP without auth, `query_database` opens a new Postgres connection per call after a
  "starts with SELECT" check, `attestation_status` reports `running_in_tee` from the SEV device.

    python bench/servers.py --kind full --port 8123   (env: the upstreams' secrets, auth, audit, policy)
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEV_GUEST_DEVICE = "/dev/sev-guest"
# Rate limits are a separate concern from the capacity measured here; the concurrency caps, queue
# times and breakers stay as packaged.
ROOMY_RATE = {"per_principal_per_minute": 10_000_000, "burst": 1_000_000}


def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def bench_policy() -> dict:
    """The packaged policy with roomy rate limits and the `echo` tool (no upstream) declared."""
    document = tomllib.loads((ROOT / "app" / "capabilities.toml").read_text())
    document["global"] = {"per_minute": 10_000_000, "burst": 1_000_000}
    for tool in document["tools"].values():
        tool["quota"] = dict(ROOMY_RATE)
    document["tools"]["echo"] = {"class": "read", "scopes": ["mcp:read"], "confirm": False, "upstream": "none",
                                 "quota": dict(ROOMY_RATE)}
    return document


def bare_app():
    from fastmcp import FastMCP

    server = FastMCP("bench-bare")
    server.tool(echo)
    return server.http_app(path="/mcp")


def full_app():
    from app.config import load_settings
    from app.secrets.env import load_env_secrets
    from app.server.assembly import assemble
    from app.server.run import configure_logging
    from app.tools.catalog import TOOL_SPECS
    from app.tools.spec import ToolSpec

    configure_logging()

    def register_echo(mcp, state) -> None:
        mcp.tool(echo)

    specs = (*TOOL_SPECS, ToolSpec(name="echo", register=register_echo))
    return assemble(load_settings(), load_env_secrets(os.environ), specs=specs).http_app()


def reference_app():
    import psycopg
    from fastmcp import FastMCP

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    log = logging.getLogger("reference-sample")
    server = FastMCP("mcp-tee-sample")

    @server.tool
    async def query_database(sql: str) -> list[dict]:
        """Run a read-only SELECT query."""
        log.info("tool call query_database")
        if not sql.strip().upper().startswith("SELECT"):
            raise ValueError("only SELECT queries are allowed")
        async with await psycopg.AsyncConnection.connect(os.environ["DB_CONNECTION_STRING"]) as conn:
            cursor = await conn.execute(sql)
            columns = [column.name for column in cursor.description or []]
            return [dict(zip(columns, (str(value) for value in row))) for row in await cursor.fetchall()]

    @server.tool
    async def attestation_status() -> dict:
        """Report whether the server runs in a TEE."""
        log.info("tool call attestation_status")
        return {"running_in_tee": os.path.exists(SEV_GUEST_DEVICE), "server": "mcp-tee-sample",
                "timestamp": dt.datetime.now(dt.timezone.utc).isoformat()}

    server.tool(echo)
    return server.http_app(path="/mcp")


APPS = {"bare": bare_app, "full": full_app, "reference": reference_app}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(APPS), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(APPS[args.kind](), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
