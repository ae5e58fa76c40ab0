"""``mcp-tee emulator``: run the offline SKR-sidecar / MAA / Key Vault stand-in until interrupted.

NOT A TEE. It prints a loud banner saying so, binds loopback only, and writes
an env file with the endpoints the server and the demo need. The key and its
release policy persist in the state directory and, like an ARM Key Vault key,
are create-only: restarting with a different CCE policy ("a tampered image")
changes hostdata but not the pinned policy, so release is refused.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from app.cli.commands import register_module

DEFAULT_PORT = 9000
DEFAULT_IDENTITY_CLIENT_ID = "00000000-0000-0000-0000-00000000e1e1"
BANNER = """
###########################################################################
#  NOT A TEE -- mcp-tee attestation EMULATOR (development and tests only)  #
#  Its attestation tokens, hostdata and key release prove NOTHING about   #
#  the hardware. Never point a production deployment or agent at it.      #
###########################################################################
"""


def register(subparsers: Any) -> None:
    """Add the ``emulator`` subcommand to an argparse subparsers object."""
    register_module(subparsers, __name__)


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="sidecar + MAA issuer port on 127.0.0.1")
    parser.add_argument("--vault-port", type=int, default=0, help="TLS vault stand-in port (0: any free port)")
    parser.add_argument("--cce-policy", type=Path, required=True, help="file holding the base64 CCE policy")
    parser.add_argument("--release-policy", type=Path, help="release-policy JSON (created from hostdata if absent)")
    parser.add_argument("--key-file", type=Path, help="PEM of the releasable RSA key (created if absent)")
    parser.add_argument("--key-name", help="name of the releasable key (default: the emulator's, as in emulator.env)")
    parser.add_argument("--identity-client-id", default=DEFAULT_IDENTITY_CLIENT_ID,
                        help="the only managed-identity client id the token endpoint serves")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="directory for the key, policy, TLS cert, stored secrets and emulator.env")
    parser.set_defaults(func=run)


def _key_bytes(path: Path) -> bytes:
    from app.emulator.keystore import key_pem, load_or_create_key

    if path.exists():
        return path.read_bytes()
    pem = key_pem(load_or_create_key(None))
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return pem


def _release_policy(path: Path, maa_endpoint: str, hostdata: str, issuer: str) -> dict[str, Any]:
    from policy.release_policy import build_release_policy

    if path.exists():
        return json.loads(path.read_text())
    policy = build_release_policy(maa_endpoint, hostdata, authority=issuer)
    path.write_text(json.dumps(policy, indent=2) + "\n")
    return policy


def write_env_file(emulator: Any, path: Path, identity_client_id: str) -> None:
    """Write shell ``export`` lines that point the server (and verify-token) at ``emulator``."""
    values = {
        "SKR_ENDPOINT": emulator.sidecar_url, "MAA_ENDPOINT": emulator.maa_endpoint,
        "AKV_ENDPOINT": emulator.akv_endpoint, "AKV_CA_FILE": emulator.ca_file, "SKR_KEY_NAME": emulator.key_name,
        "IDENTITY_CLIENT_ID": identity_client_id, **emulator.identity_env,
        "MAA_ISSUER": emulator.issuer, "EXPECTED_HOSTDATA": emulator.hostdata,
    }
    path.write_text("".join(f"export {name}='{value}'\n" for name, value in values.items()))


def run(args: argparse.Namespace) -> int:
    """Start the emulator and serve until SIGINT/SIGTERM."""
    from cryptography.hazmat.primitives import serialization

    from app.emulator.server import DEFAULT_KEY_NAME, start_emulator
    from policy.release_policy import hostdata_of

    print(BANNER, file=sys.stderr, flush=True)
    if not 0 < args.port < 65536:
        # The issuer URL is pinned in the release policy, so it needs a fixed port.
        print("--port must be a fixed port (1-65535)", file=sys.stderr)
        return 2
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    cce_policy = args.cce_policy.read_text().strip()
    hostdata = hostdata_of(cce_policy)
    issuer = f"http://127.0.0.1:{args.port}"
    policy = _release_policy(args.release_policy or state_dir / "release-policy.json",
                             issuer.removeprefix("http://"), hostdata, issuer)
    key_bytes = _key_bytes(args.key_file or state_dir / "unseal-key.pem")
    emulator = start_emulator(cce_policy, release_policy=policy, key_pem_bytes=key_bytes,
                              key_name=args.key_name or DEFAULT_KEY_NAME,
                              identity_client_id=args.identity_client_id, port=args.port,
                              vault_port=args.vault_port, state_dir=state_dir)
    (state_dir / "unseal-key.pub.pem").write_bytes(emulator.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    write_env_file(emulator, state_dir / "emulator.env", args.identity_client_id)
    print(f"emulator (NOT A TEE) up: sidecar {emulator.sidecar_url}, vault {emulator.vault_url}, "
          f"hostdata {emulator.hostdata}; env in {state_dir / 'emulator.env'}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    return 0
