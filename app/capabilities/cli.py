"""CLI subcommands for the capability model: `dev-token` and `audit verify`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.capabilities.audit_verify import load_public_key, verify_audit_log
from app.capabilities.dev_issuer import DEFAULT_AUDIENCE, DEFAULT_STATE_DIR, DEFAULT_TTL_S, DevIssuer

EXIT_OK, EXIT_BAD_LOG, EXIT_USAGE = 0, 1, 2


def _dev_token(args: argparse.Namespace) -> int:
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    if not scopes:
        print("dev-token: --scopes needs at least one scope", file=sys.stderr)
        return EXIT_USAGE
    audience = args.audience or os.environ.get("MCP_AUTH_AUDIENCE") or DEFAULT_AUDIENCE
    print(DevIssuer(Path(args.state_dir)).mint(scopes=scopes, audience=audience, subject=args.sub, ttl_s=args.ttl))
    return EXIT_OK


def _audit_verify(args: argparse.Namespace) -> int:
    try:
        keys = [load_public_key(value) for value in args.public_key]
    except (OSError, ValueError) as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = verify_audit_log(args.file, keys)
    except OSError as exc:
        print(f"audit verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not result.ok:
        print(f"{args.file}: line {result.bad_line}: {result.reason}", file=sys.stderr)
        return EXIT_BAD_LOG
    print(f"{args.file}: OK, {result.records} records, chain intact and covered by a final signed checkpoint")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dev-token` and `audit verify` to the `mcp-tee` CLI."""
    token = subparsers.add_parser("dev-token", help="mint a bearer token from the local dev issuer")
    token.add_argument("--scopes", default="mcp:read", help="comma-separated, e.g. mcp:read,mcp:write")
    token.add_argument("--sub", default="dev-user", help="the token subject (principal)")
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help="lifetime in seconds")
    token.add_argument("--audience", default=None, help=f"server URL (default $MCP_AUTH_AUDIENCE or {DEFAULT_AUDIENCE})")
    token.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="where the dev key pair lives")
    token.set_defaults(func=_dev_token)

    audit = subparsers.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check an audit log's hash chain and signatures")
    verify.add_argument("file", help="the audit log (JSON lines)")
    verify.add_argument("--public-key", action="append", required=True,
                        help="Ed25519 public key: base64 raw, PEM, or a file holding either; repeatable")
    verify.set_defaults(func=_audit_verify)
