"""`mcp-tee`: the command line for serving, local development and the trust-chain tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Sequence

from app import __version__
from app.config import ConfigError, Settings, is_loopback_host, load_settings
from app.secrets.env import load_env_secrets
from app.secrets.sealed import StartupRefused, start_tee

logger = logging.getLogger("mcp_tee")

EXIT_CONFIG = 2
EXIT_STARTUP_REFUSED = 3
SHUTDOWN_GRACE_S = 5
# httpx logs request URLs (a webhook URL is a credential); the MCP SDK logs session ids, which
# are bearer-like handles, at INFO.
QUIET_LOGGERS = frozenset({"httpx", "httpcore", "azure.core.pipeline.policies.http_logging_policy",
                           "mcp.server.streamable_http", "mcp.server.streamable_http_manager"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    return int(args.func(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-tee", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mcp-tee {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the MCP server")
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)
    from app.agent import cli as agent_cli
    from app.attestation import cli as attestation_cli
    from app.capabilities import cli as capabilities_cli
    from app.devstack import cli as devstack_cli
    from app.emulator import cli as emulator_cli

    devstack_cli.register(commands)
    capabilities_cli.register(commands)
    attestation_cli.register(commands)
    emulator_cli.register(commands)
    agent_cli.register(commands)
    return parser


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


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MCP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


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


def refuse_exposed_bind_without_auth(settings: Settings) -> None:
    """Fail closed: without inbound auth, only this machine may reach the tools."""
    if settings.transport == "streamable-http" and not is_loopback_host(settings.host) and settings.auth is None:
        raise ConfigError(
            f"refusing to listen on {settings.host}: inbound auth is not configured, so anyone who can reach "
            "the port could use every tool. Bind 127.0.0.1, or configure MCP_AUTH_ISSUER and MCP_AUTH_AUDIENCE."
        )


async def serve(settings: Settings, env) -> int:
    """Load secrets, build the server and run it until it is stopped."""
    import uvicorn

    from app.assembly import assemble
    from app.server import MCP_PATH

    if settings.tee_mode:
        tee = await start_tee(env, require_secrets=settings.require_secrets)
        server = assemble(settings, tee.secrets, audit_key=tee.audit_key, tee=tee)
    else:
        server = assemble(settings, load_env_secrets(env))
    try:
        for tool, reason in sorted(server.state.disabled.items()):
            logger.warning("tool %s is disabled: %s", tool, reason)
        if settings.transport == "stdio":
            await server.mcp.run_async(transport="stdio", show_banner=False)
            return 0
        logger.info("serving MCP on http://%s:%d%s (mode %s, auth %s)", settings.host, settings.port, MCP_PATH,
                    settings.mode, "on" if settings.auth else "off: loopback only")
        config = uvicorn.Config(server.http_app(), host=settings.host, port=settings.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        await uvicorn.Server(config).serve()
        return 0
    finally:
        await server.aclose()


if __name__ == "__main__":
    sys.exit(main())
