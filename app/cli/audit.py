"""`mcp-tee audit verify`: check an audit log's hash chain and signed checkpoints (`--live` for a running server's)."""

from __future__ import annotations

import argparse
import json
import sys

from app.cli.commands import register_module

EXIT_OK, EXIT_BAD_LOG, EXIT_USAGE = 0, 1, 2


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    audit_commands = parser.add_subparsers(dest="audit_command", title="audit commands", metavar="AUDIT_COMMAND")
    verify = audit_commands.add_parser("verify", help="check an audit log's hash chain and signatures",
                                       description="Check an audit log's hash chain and signed checkpoints.",
                                       epilog=parser.epilog, formatter_class=parser.formatter_class)
    verify.add_argument("file", help="the audit log (JSON lines)")
    verify.add_argument("--public-key", action="append", required=True,
                        help="Ed25519 public key: base64 raw, PEM, or a file holding either; repeatable (the key "
                             "is new on every server restart)")
    verify.add_argument("--live", action="store_true",
                        help="the log of a running server: verify up to its last signed checkpoint and report "
                             "the records after it as pending, not as tampering")
    verify.add_argument("--expect-head", metavar="SEQ:SHA256",
                        help="a signed head kept outside the host (attestation_status audit_head); "
                             "a log that does not reach it was truncated")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.set_defaults(func=_audit_verify)
    # `mcp-tee audit` alone: show what it can do instead of an argparse error.
    parser.set_defaults(func=lambda args: _print_help(parser))


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def _audit_verify(args: argparse.Namespace) -> int:
    from app.audit.verify import ExpectedHead, load_public_key, verify_audit_log

    try:
        keys = [load_public_key(value) for value in args.public_key]
        expect_head = ExpectedHead.parse(args.expect_head) if args.expect_head else None
    except (OSError, ValueError) as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = verify_audit_log(args.file, keys, live=args.live, expect_head=expect_head)
    except OSError as exc:
        print(f"audit verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"file": str(args.file), "ok": result.ok, "records": result.records,
                          "bad_line": result.bad_line, "reason": result.reason, "pending": result.pending,
                          "warnings": result.warnings}))
        return EXIT_OK if result.ok else EXIT_BAD_LOG
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not result.ok:
        print(f"{args.file}: line {result.bad_line}: {result.reason}", file=sys.stderr)
        return EXIT_BAD_LOG
    reaches = f", reaches the expected head seq {expect_head.seq}" if expect_head else ""
    if args.live:
        print(f"{args.file}: OK up to the last signed checkpoint, {result.records - result.pending} records; "
              f"{result.pending} newer records pending (the next checkpoint will cover them){reaches}")
    else:
        print(f"{args.file}: OK, {result.records} records, chain intact and covered by a final signed "
              f"checkpoint{reaches}")
    if expect_head is None:
        print("note: without --expect-head a cut back to an earlier run's final checkpoint cannot be detected",
              file=sys.stderr)
    return EXIT_OK
