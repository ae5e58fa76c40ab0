"""``mcp-tee verify-token`` and ``mcp-tee seal``: verify an MAA token; seal a baseline secret.

Secrets to seal are read from stdin (or a no-echo prompt), never from argv,
so they stay out of shell history and ``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.cli.commands import register_module
from app.cli.credentials import operator_credential

PASS, FAIL, SKIP = "✓", "✗", "–"


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "verify-token":
        parser.add_argument("--token", required=True, help="file holding the token, or - for stdin")
        parser.add_argument("--issuer", required=True, help="trusted MAA issuer URL (https; loopback http allowed)")
        parser.add_argument("--expect-hostdata", required=True, help="expected hostdata (sha256 of the CCE policy)")
        parser.add_argument("--nonce", help="nonce that x-ms-runtime must carry")
        parser.add_argument("--jwks-url", help="signing-key URL (default: <issuer>/certs)")
        parser.add_argument("--json", action="store_true", help="print the checks as JSON")
        parser.set_defaults(func=run_verify)
        return
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--public-key", type=Path, help="PEM public key: seal offline and print the result")
    target.add_argument("--vault", help="vault URL: fetch the key's public half and store the sealed secret")
    parser.add_argument("--key", help="key name in the vault (with --vault)")
    parser.add_argument("--name", help="secret name to write (with --vault)")
    parser.add_argument("--ca-file", default=os.environ.get("AKV_CA_FILE") or None,
                        help="CA bundle for the vault's TLS, e.g. the emulator's self-signed cert (default: "
                             "$AKV_CA_FILE, the name the server uses; else the system CAs)")
    parser.add_argument("--identity-client-id", help="use this user-assigned managed identity")
    parser.set_defaults(func=run_seal)


def register(subparsers: Any) -> None:
    """Add ``verify-token`` and ``seal`` to an argparse subparsers object."""
    register_module(subparsers, __name__)


def _read_token(source: str) -> str:
    return (sys.stdin.read() if source == "-" else Path(source).read_text()).strip()


def run_verify(args: argparse.Namespace) -> int:
    """Print one ✓/✗ line per check (or JSON); exit 0 only when every requested check passes."""
    from app.attestation.errors import AttestationError
    from app.attestation.verifier import CheckResult, check_label, check_maa_token

    try:
        results = check_maa_token(_read_token(args.token), issuer=args.issuer, jwks_url=args.jwks_url,
                                  expected_hostdata=args.expect_hostdata, nonce=args.nonce)
    except (AttestationError, ValueError, OSError) as exc:
        results = [CheckResult(getattr(exc, "check", "input"), False, str(exc))]
    ok = all(result.ok for result in results)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [{"check": r.check, "ok": r.ok, "skipped": r.skipped,
                                                 "detail": r.detail} for r in results]}))
        return 0 if ok else 1
    for result in results:
        mark = SKIP if result.skipped else PASS if result.ok else FAIL
        print(f"{mark} {check_label(result.check)}" + (f": {result.detail}" if result.detail else ""))
    return 0 if ok else 1


def _read_secret() -> bytes:
    if sys.stdin.isatty():
        return getpass.getpass("secret value (not echoed): ").encode()
    # One trailing newline is what `echo` / here-strings add; keep anything else verbatim.
    return sys.stdin.buffer.read().removesuffix(b"\n")


def _load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from app.secrets.jwe import SealingError

    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, rsa.RSAPublicKey):
        raise SealingError("the public key file must hold an RSA public key")
    return key


def run_seal(args: argparse.Namespace) -> int:
    """Seal stdin offline (print it) or into Key Vault (print only the new secret's id)."""
    from app.secrets.jwe import SealingError, seal
    from app.secrets.keyvault import KeyVaultError, fetch_public_key, write_sealed_secret

    if args.vault and not (args.key and args.name):
        print("seal --vault needs --key and --name", file=sys.stderr)
        return 2
    try:
        if args.public_key:
            print(seal(_read_secret(), _load_public_key(args.public_key)))
            return 0
        credential = operator_credential(args.identity_client_id)
        public_key, kid = fetch_public_key(args.vault, args.key, credential, connection_verify=args.ca_file)
        sealed = seal(_read_secret(), public_key, kid=args.key)
        secret_id = write_sealed_secret(args.vault, args.name, sealed, credential, connection_verify=args.ca_file)
    except (SealingError, KeyVaultError, OSError, ValueError) as exc:
        print(f"seal failed: {exc}", file=sys.stderr)
        return 1
    print(f"sealed {args.name!r} with key {kid} -> {secret_id}")
    return 0
