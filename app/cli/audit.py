"""`mcp-tee audit verify`: check an audit log's hash chain and signed checkpoints."""

from __future__ import annotations

import argparse
import sys

from app.audit.verify import load_public_key, verify_audit_log

EXIT_OK, EXIT_BAD_LOG, EXIT_USAGE = 0, 1, 2


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
    """Add `audit verify` to the `mcp-tee` CLI."""
    audit = subparsers.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check an audit log's hash chain and signatures")
    verify.add_argument("file", help="the audit log (JSON lines)")
    verify.add_argument("--public-key", action="append", required=True,
                        help="Ed25519 public key: base64 raw, PEM, or a file holding either; repeatable")
    verify.set_defaults(func=_audit_verify)
