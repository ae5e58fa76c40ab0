"""``mcp-tee capability``: narrow a capability token offline, or show its delegation chain.

Tokens travel on stdin and stdout only (never argv, so they stay out of shell history and
``/proc/<pid>/cmdline``); errors name the problem, never the token. Both commands verify the
token against the root public key first (``--root-key``, or ``MCP_TEE_CAPABILITY_PUB``): the
``capability_pub`` the server's attestation binds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any


ROOT_KEY_ENV = "MCP_TEE_CAPABILITY_PUB"
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``30s``, ``10m``, ``2h`` or ``1d`` as seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError("a duration is a number with an optional unit s, m, h or d (e.g. 10m)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def names(text: str) -> frozenset[str]:
    """A comma-separated list as a set of names."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``attenuate`` and ``inspect`` under ``mcp-tee capability``."""
    commands = parser.add_subparsers(dest="capability_command", title="capability commands", metavar="COMMAND")
    narrow = commands.add_parser("attenuate", help="append a narrowing block to the token on stdin (offline)",
                                 formatter_class=parser.formatter_class)
    narrow.add_argument("--root-key", help=f"the server's capability_pub (default: ${ROOT_KEY_ENV})")
    narrow.add_argument("--tools", type=names, help="only these tools (comma-separated)")
    narrow.add_argument("--tables", type=names, help="query_database may read only these relations")
    narrow.add_argument("--max-rows", type=int, help="query_database may return at most this many rows")
    narrow.add_argument("--channel", type=names, help="send_notification may post only to these channels")
    narrow.add_argument("--ttl", type=parse_duration, help="expire this long from now (e.g. 10m)")
    narrow.add_argument("--max-calls", type=int, help="at most this many calls with this token and its children")
    narrow.add_argument("--context", help="a label the audit records, e.g. 'sub-agent: triage-bot'")
    narrow.set_defaults(func=run_attenuate)
    inspect = commands.add_parser("inspect", help="verify the token on stdin and print its chain (not the token)",
                                  formatter_class=parser.formatter_class)
    inspect.add_argument("--root-key", help=f"the server's capability_pub (default: ${ROOT_KEY_ENV})")
    inspect.set_defaults(func=run_inspect)
    parser.set_defaults(func=lambda args: parser.print_help() or EXIT_USAGE)


def _root_key(args: argparse.Namespace) -> Any:
    from app.wire.capability_token import public_key_from_b64

    text = args.root_key or os.environ.get(ROOT_KEY_ENV, "")
    if not text:
        raise ValueError(f"pass --root-key or set {ROOT_KEY_ENV} (the capability_pub from the attestation)")
    return public_key_from_b64(text.strip())


def run_attenuate(args: argparse.Namespace) -> int:
    """Read a token on stdin, print the narrowed token on stdout."""
    from app.wire.capability_token import Attenuation, attenuate

    try:
        root_key = _root_key(args)
        narrowing = Attenuation(tools=args.tools, tables=args.tables, max_rows=args.max_rows, channels=args.channel,
                                ttl_s=args.ttl, max_calls=args.max_calls, context=args.context)
    except ValueError as exc:
        print(f"mcp-tee capability attenuate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        narrowed = attenuate(sys.stdin.read(), narrowing, root_key)
    except ValueError as exc:
        print(f"mcp-tee capability attenuate: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(narrowed)
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    """Print the verified chain as JSON: root principal, rights, expiry, each block's id and context."""
    from app.delegation.errors import CapabilityRefused
    from app.delegation.token import verify_presented

    try:
        capability = verify_presented(sys.stdin.read(), _root_key(args))
    except ValueError as exc:
        print(f"mcp-tee capability inspect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CapabilityRefused as exc:
        print(f"mcp-tee capability inspect: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps({"root_principal": capability.root_subject, "rights": sorted(capability.rights),
                      "expires_at": capability.expires_at.isoformat(), "chain": capability.chain}, indent=2))
    return EXIT_OK
