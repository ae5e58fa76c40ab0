"""`mcp-tee serve`, and what `mcp-tee dev` shares with it: the serve arguments and a run loop without tracebacks."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping

from app.cli.commands import register_module

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_STARTUP_REFUSED = 3
DEFAULT_PORT = 8080


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    add_serve_arguments(parser)
    parser.add_argument("--tee", action="store_true", default=None, help="TEE mode (same as MCP_TEE_MODE=tee)")
    parser.add_argument("--no-require-secrets", dest="require_secrets", action="store_false", default=None,
                        help="TEE mode: start with the affected tools disabled instead of refusing to start")
    parser.add_argument("--require-pinned-env", action="store_true",
                        help="TEE deployment: refuse to start unless every variable the deployment pins is set")
    parser.set_defaults(func=run_serve)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments `serve` and `dev` share."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind")
    parser.add_argument("--transport", choices=("streamable-http", "stdio"), default="streamable-http",
                        help="streamable-http serves /mcp on --host:--port; stdio serves one local client on "
                             "stdin/stdout")


def run_serve(args: argparse.Namespace) -> int:
    from app.config import load_settings

    return run_until_stopped(lambda: load_settings(host=args.host, port=args.port, transport=args.transport,
                                                   tee=args.tee, require_secrets=args.require_secrets,
                                                   require_pinned_env=args.require_pinned_env), os.environ)


def run_until_stopped(settings_factory: Callable[[], object], env: Mapping[str, str],
                      before_serving: Callable[[object], None] | None = None) -> int:
    """Validate, serve until stopped, and turn every expected way of ending into a message and an exit code."""
    from app.config import ConfigError
    from app.secrets.tee_release import StartupRefused
    from app.server.run import configure_logging, refuse_exposed_bind_without_auth, serve

    configure_logging()
    try:
        settings = settings_factory()
        refuse_exposed_bind_without_auth(settings)
        if before_serving is not None:
            before_serving(settings)
        return asyncio.run(serve(settings, env))
    except ConfigError as exc:
        print(f"mcp-tee: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupRefused as exc:
        print(f"mcp-tee: {exc}", file=sys.stderr)
        return EXIT_STARTUP_REFUSED
    except KeyboardInterrupt:
        return EXIT_OK
