"""`mcp-tee dev`: the local, non-TEE run behind `make run`, with every tool working offline."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from app.auth.dev_issuer import DEFAULT_STATE_DIR as DEFAULT_ISSUER_DIR
from app.cli.commands import command_path, register_module
from app.cli.serve import EXIT_CONFIG, add_serve_arguments, run_until_stopped

BANNER = "LOCAL DEV MODE: not a TEE. Secrets are plaintext in this process; GitHub and the webhook are local stand-ins unless GITHUB_TOKEN / WEBHOOK_URL are set."
STATE_DIR = DEFAULT_ISSUER_DIR.parent
PREFERRED_PG_PORT = 55432
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"  # the version the e2e tests run; older ones lack --header


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    add_serve_arguments(parser)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR,
                        help="holds the local Postgres cluster, the dev issuer's key and the audit log; one "
                             "running `mcp-tee dev` per directory")
    parser.add_argument("--pg-port", type=int, default=None,
                        help=f"port of the local Postgres on 127.0.0.1 (default: {PREFERRED_PG_PORT} when free, "
                             "else any free port)")
    parser.add_argument("--no-auth", action="store_true",
                        help="no bearer tokens: every caller is the local principal (loopback only)")
    parser.set_defaults(func=run_dev)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def run_dev(args: argparse.Namespace) -> int:
    from app.devstack.lock import StateDirBusy, StateDirLock

    url = f"http://{args.host}:{args.port}/mcp"
    lock = StateDirLock(args.state_dir)
    try:
        lock.acquire({"url": url, "transport": args.transport})
    except StateDirBusy as exc:
        print(f"mcp-tee dev: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # uvicorn returns after draining on SIGTERM; before it runs, SIGTERM must still unwind through
    # the `finally` below so that the local Postgres and stand-ins are stopped, not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stops: list = []
    try:
        if args.transport == "streamable-http" and not _port_is_free(args.host, args.port):
            return EXIT_CONFIG
        print(f"\n*** {BANNER} ***\n", file=sys.stderr)
        env = _dev_env(args, url)
        lock.update({"url": url, "transport": args.transport, "issuer_dir": env["MCP_DEV_ISSUER_DIR"],
                     "audience": env.get("MCP_AUTH_AUDIENCE"), "audit_log": env["MCP_AUDIT_LOG"]})
        _start_local_upstreams(args, env, stops)
        from app.config import load_settings

        return run_until_stopped(
            lambda: load_settings(env, host=args.host, port=args.port, transport=args.transport), env,
            before_serving=lambda settings: _print_connect_help(url, settings))
    finally:
        for stop in stops:  # Postgres first: it is the one that outlives us if we are killed mid-way
            stop()
        lock.release()


def _port_is_free(host: str, port: int) -> bool:
    from app.config import ConfigError
    from app.server.run import bind_listener

    try:
        bind_listener(host, port).close()
    except ConfigError as exc:
        print(f"mcp-tee dev: {exc}", file=sys.stderr)
        return False
    return True


def _dev_env(args: argparse.Namespace, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MCP_TEE_MODE", None)
    env.setdefault("MCP_DEV_ISSUER_DIR", str((args.state_dir / DEFAULT_ISSUER_DIR.name).resolve()))
    if args.transport == "stdio":
        env.pop("MCP_AUTH_ISSUER", None)  # stdio carries no token: the one local user is the principal
    elif not args.no_auth and not env.get("MCP_AUTH_ISSUER"):
        # The local flow is the production flow: bearer tokens from a (local) issuer.
        env.update(MCP_AUTH_ISSUER="dev", MCP_AUTH_AUDIENCE=url)
    # One log per run: each run signs with a new key, and `audit verify` takes one run's key.
    env.setdefault("MCP_AUDIT_LOG", str(args.state_dir / f"audit-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"))
    return env


def _start_local_upstreams(args: argparse.Namespace, env: dict[str, str], stops: list) -> None:
    """Start what the env does not already provide; each started part's stop goes into `stops` at once,
    so a failure half-way still stops what did start."""
    from app.devstack.postgres import LocalPostgres, PostgresUnavailable, preferred_port
    from app.devstack.standins import GitHubStandIn, WebhookSink
    from app.devstack.threaded import ThreadedServer

    if not env.get("DB_CONNECTION_STRING"):
        try:
            pg_port = args.pg_port if args.pg_port is not None else preferred_port(PREFERRED_PG_PORT)
            postgres = LocalPostgres(args.state_dir / "pg", port=pg_port)
            postgres.start()
            stops.append(postgres.stop)
            env["DB_CONNECTION_STRING"] = postgres.provision_demo(reader_password=secrets.token_urlsafe(18))
            print(f"local Postgres on 127.0.0.1:{postgres.port} (demo schema: issues, incidents; role mcp_reader)",
                  file=sys.stderr)
        except PostgresUnavailable as exc:
            print(f"query_database is disabled: {exc}. To enable it, install the PostgreSQL server "
                  "(apt-get install postgresql), point PG_BINDIR at its bin directory, or set DB_CONNECTION_STRING.",
                  file=sys.stderr)
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


def _print_connect_help(url: str, settings) -> None:
    """What to run next; every command is copy-pasteable from the repository root."""
    if settings.transport == "stdio":
        return  # stdout is the protocol; the stdio startup line says how calls are authorised
    mcp_tee = command_path()
    lines = [f"\nConnect an MCP client to {url}"]
    header = ""
    if settings.auth is not None:
        lines += ["  Bearer token from the local dev issuer (same flow as production); it expires after 1 h, "
                  "run the same command again to refresh:",
                  f"    export TOKEN=$({mcp_tee} dev-token --scopes mcp:read,mcp:write)"]
        header = ' --header "Authorization: Bearer $TOKEN"'
    lines += [f"  MCP Inspector:   npx -y {INSPECTOR} --cli {url} --transport http{header} --method tools/list",
              f"  Try a write:     {mcp_tee} call send_notification --arg message=hello"
              + (" --auth-token-env TOKEN" if settings.auth is not None else "")
              + "   (asks you to confirm here)",
              f"  Client config:   {mcp_tee} client-config --client claude-desktop|vscode|cursor|json [--write]",
              f"  Audit log:       {settings.audit_log}",
              f"    verify it live: {mcp_tee} audit verify {settings.audit_log} --live --public-key KEY",
              "    KEY is audit_public_key from attestation_status (or /healthz). It is new on every restart, "
              "so each run writes its own log.", ""]
    print("\n".join(lines), file=sys.stderr)
