"""`mcp-tee audit verify`: check an audit log's hash chain and signed checkpoints (`--live` for a running server's),
from a file or from the blob store the server ships it to."""

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
    verify.add_argument("file", nargs="?", help="the audit log (JSON lines); or read the blob store:")
    verify.add_argument("--blob-account-url", help="https://<account>.blob.core.windows.net")
    verify.add_argument("--blob-container", help="the audit container")
    verify.add_argument("--blob-prefix", default="mcp-tee", help="the chain's folder, one per instance (default mcp-tee)")
    verify.add_argument("--identity-client-id", help="a managed identity to read with (default: DefaultAzureCredential)")
    verify.add_argument("--ca-file", help="extra CA for the storage endpoint's certificate (Azurite)")
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
    if (args.file is None) == (args.blob_container is None) or (args.blob_container and not args.blob_account_url):
        print("audit verify: give either a FILE or --blob-account-url with --blob-container", file=sys.stderr)
        return EXIT_USAGE
    if args.file is None:
        return _verify_store(args, keys, expect_head)
    try:
        result = verify_audit_log(args.file, keys, live=args.live, expect_head=expect_head)
    except OSError as exc:
        print(f"audit verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return _report(args, str(args.file), result, expect_head)


def _verify_store(args: argparse.Namespace, keys: list, expect_head) -> int:
    from app.audit.blob_store import AuditBlobStore, AuditStoreError
    from app.audit.store_verify import verify_audit_store
    from app.cli.credentials import operator_credential

    if args.live:
        print("audit verify: --live reads a file; the store holds only sealed blocks", file=sys.stderr)
        return EXIT_USAGE
    store = AuditBlobStore(args.blob_account_url, args.blob_container, args.blob_prefix,
                           operator_credential(args.identity_client_id), connection_verify=args.ca_file)
    try:
        result = verify_audit_store(store, keys, expect_head=expect_head)
    except AuditStoreError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    return _report(args, f"{args.blob_container}/{args.blob_prefix}", result, expect_head)


def _report(args: argparse.Namespace, source: str, result, expect_head) -> int:
    if args.json:
        print(json.dumps({"file": source, "ok": result.ok, "records": result.records,
                          "bad_line": result.bad_line, "reason": result.reason, "pending": result.pending,
                          "warnings": result.warnings}))
        return EXIT_OK if result.ok else EXIT_BAD_LOG
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not result.ok:
        print(f"{source}: line {result.bad_line}: {result.reason}", file=sys.stderr)
        return EXIT_BAD_LOG
    reaches = f", reaches the expected head seq {expect_head.seq}" if expect_head else ""
    if args.live:
        print(f"{source}: OK up to the last signed checkpoint, {result.records - result.pending} records; "
              f"{result.pending} newer records pending (the next checkpoint will cover them){reaches}")
    else:
        print(f"{source}: OK, {result.records} records, chain intact and covered by a final signed "
              f"checkpoint{reaches}")
    if expect_head is None:
        print("note: without --expect-head a cut back to an earlier run's final checkpoint cannot be detected",
              file=sys.stderr)
    return EXIT_OK
