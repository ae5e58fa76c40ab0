"""`mcp-tee dev-token`: mint a bearer token from the local development issuer."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.auth.dev_issuer import DEFAULT_AUDIENCE, DEFAULT_STATE_DIR, DEFAULT_TTL_S, DevIssuer

EXIT_OK, EXIT_USAGE = 0, 2


def _dev_token(args: argparse.Namespace) -> int:
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    if not scopes:
        print("dev-token: --scopes needs at least one scope", file=sys.stderr)
        return EXIT_USAGE
    audience = args.audience or os.environ.get("MCP_AUTH_AUDIENCE") or DEFAULT_AUDIENCE
    print(DevIssuer(Path(args.state_dir)).mint(scopes=scopes, audience=audience, subject=args.sub, ttl_s=args.ttl))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dev-token` to the `mcp-tee` CLI."""
    token = subparsers.add_parser("dev-token", help="mint a bearer token from the local dev issuer")
    token.add_argument("--scopes", default="mcp:read", help="comma-separated, e.g. mcp:read,mcp:write")
    token.add_argument("--sub", default="dev-user", help="the token subject (principal)")
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help="lifetime in seconds")
    token.add_argument("--audience", default=None, help=f"server URL (default $MCP_AUTH_AUDIENCE or {DEFAULT_AUDIENCE})")
    token.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="where the dev key pair lives")
    token.set_defaults(func=_dev_token)
