"""`mcp-tee dev`: the local, non-TEE run behind `make run`, with every tool working offline."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path

from app.cli.serve import EXIT_CONFIG, add_serve_arguments
from app.config import ConfigError, load_settings
from app.devstack.postgres import LocalPostgres, PostgresUnavailable
from app.devstack.standins import GitHubStandIn, WebhookSink
from app.devstack.threaded import ThreadedServer
from app.server.run import configure_logging, refuse_exposed_bind_without_auth, serve

BANNER = "LOCAL DEV MODE: not a TEE. Secrets are plaintext in this process; GitHub and the webhook are local stand-ins unless GITHUB_TOKEN / WEBHOOK_URL are set."
STATE_DIR = Path(".mcp-tee")
DEFAULT_PG_PORT = 55432


def register(commands) -> None:
    dev = commands.add_parser("dev", help="run locally (non-TEE) with a throwaway Postgres and offline stand-ins")
    add_serve_arguments(dev)
    dev.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where the local Postgres cluster lives")
    dev.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT)
    dev.add_argument("--no-auth", action="store_true", help="skip the local dev issuer (loopback only)")
    dev.set_defaults(func=run_dev)


def run_dev(args: argparse.Namespace) -> int:
    configure_logging()
    # uvicorn re-raises SIGTERM after draining; turn it into an exception so the local
    # Postgres and stand-ins below are stopped instead of left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"\n*** {BANNER} ***\n", file=sys.stderr)
    env = dict(os.environ)
    env.pop("MCP_TEE_MODE", None)
    if not args.no_auth and not env.get("MCP_AUTH_ISSUER"):
        # The local flow is the production flow: bearer tokens from a (local) issuer.
        env.update(MCP_AUTH_ISSUER="dev", MCP_AUTH_AUDIENCE=f"http://{args.host}:{args.port}/mcp")
    env.setdefault("MCP_AUDIT_LOG", str(args.state_dir / "audit.jsonl"))
    stack = _start_local_upstreams(args, env)
    try:
        settings = load_settings(env, host=args.host, port=args.port, transport=args.transport)
        refuse_exposed_bind_without_auth(settings)
        if settings.transport == "streamable-http":
            _print_connect_help(f"http://{args.host}:{args.port}/mcp", auth=settings.auth is not None,
                                audit_log=settings.audit_log)
        return asyncio.run(serve(settings, env))
    except ConfigError as exc:
        print(f"mcp-tee: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
    finally:
        for stop in stack:  # Postgres first: it is the one that outlives us if we are killed mid-way
            stop()


def _start_local_upstreams(args: argparse.Namespace, env: dict[str, str]) -> list:
    stops = []
    if not env.get("DB_CONNECTION_STRING"):
        try:
            postgres = LocalPostgres(args.state_dir / "pg", port=args.pg_port)
            postgres.start()
            stops.append(postgres.stop)
            env["DB_CONNECTION_STRING"] = postgres.provision_demo(reader_password=secrets.token_urlsafe(18))
            print(f"local Postgres on 127.0.0.1:{postgres.port} (demo schema: issues, incidents; role mcp_reader)",
                  file=sys.stderr)
        except PostgresUnavailable as exc:
            print(f"query_database is disabled: {exc}. To enable it, install the PostgreSQL server "
                  "(apt-get install postgresql) or set DB_CONNECTION_STRING.", file=sys.stderr)
    if not env.get("GITHUB_TOKEN"):
        token = f"dev-{secrets.token_urlsafe(12)}"
        github = ThreadedServer(GitHubStandIn(tokens={token}).app).start()
        stops.append(github.stop)
        env.update(GITHUB_TOKEN=token, GITHUB_API_URL=github.url)
        print(f"GitHub stand-in on {github.url} (demo issues; set GITHUB_TOKEN to use real GitHub)", file=sys.stderr)
    if not env.get("WEBHOOK_URL"):
        path = f"/hooks/{secrets.token_urlsafe(12)}"
        sink = ThreadedServer(WebhookSink(path=path, echo=True).app).start()
        stops.append(sink.stop)
        env["WEBHOOK_URL"] = f"{sink.url}{path}"
        print("webhook sink on loopback: confirmed notifications are printed here", file=sys.stderr)
    return stops


def _print_connect_help(url: str, *, auth: bool, audit_log: str) -> None:
    token = ""
    header = ""
    if auth:
        token = f"""  Bearer token from the local dev issuer (same flow as production):
    TOKEN=$(.venv/bin/mcp-tee dev-token --scopes mcp:read,mcp:write --audience {url})
"""
        header = ' --header "Authorization: Bearer $TOKEN"'
    print(
        f"""
Connect an MCP client to {url}
{token}  MCP Inspector:   npx -y @modelcontextprotocol/inspector --cli {url} --transport http{header} --method tools/list
  Client config:   {{"mcpServers": {{"mcp-tee": {{"type": "http", "url": "{url}"{', "headers": {"Authorization": "Bearer <TOKEN>"}' if auth else ''}}}}}}}
  Audit log:       {audit_log}  (verify with: mcp-tee audit verify {audit_log} --public-key <audit_public_key from attestation_status>)
""",
        file=sys.stderr,
    )
