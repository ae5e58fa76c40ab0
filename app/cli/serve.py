"""`mcp-tee serve`, and the serving helpers that `mcp-tee dev` shares: settings, logging, the run loop."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from app.config import ConfigError, load_settings
from app.secrets.tee_release import StartupRefused
from app.server.run import configure_logging, refuse_exposed_bind_without_auth, serve

EXIT_CONFIG = 2
EXIT_STARTUP_REFUSED = 3


def register(commands) -> None:
    serve = commands.add_parser("serve", help="run the MCP server")
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    parser.add_argument("--transport", choices=("streamable-http", "stdio"), default="streamable-http")
    parser.add_argument("--tee", action="store_true", default=None, help="TEE mode (same as MCP_TEE_MODE=tee)")
    parser.add_argument(
        "--no-require-secrets",
        dest="require_secrets",
        action="store_false",
        default=None,
        help="TEE mode: start with the affected tools disabled instead of refusing to start",
    )


def run_serve(args: argparse.Namespace) -> int:
    configure_logging()
    try:
        settings = load_settings(
            host=args.host, port=args.port, transport=args.transport, tee=args.tee, require_secrets=args.require_secrets
        )
        refuse_exposed_bind_without_auth(settings)
        return asyncio.run(serve(settings, os.environ))
    except ConfigError as exc:
        print(f"mcp-tee: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupRefused as exc:
        print(f"mcp-tee: {exc}", file=sys.stderr)
        return EXIT_STARTUP_REFUSED
    except KeyboardInterrupt:
        return 0
