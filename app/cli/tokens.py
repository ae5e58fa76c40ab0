"""`mcp-tee dev-token`: mint a bearer token from the running dev server's issuer, for a scope set the policy knows.

Where the issuer is: `--issuer-dir` when given (created if absent: the user named it), else
`$MCP_DEV_ISSUER_DIR`, else the one a running `mcp-tee dev` recorded in its state directory's lock
(looked up in `./.mcp-tee` and each parent's), else an existing `./.mcp-tee/dev-issuer`. Anything
else is refused with the list of places looked at: a silently created key would mint tokens that
the running server rejects as "invalid token".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

from app.auth.dev_issuer import DEFAULT_AUDIENCE, DEFAULT_STATE_DIR, DEFAULT_TTL_S, DevIssuer
from app.cli.commands import register_module

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
MIN_TTL_S = 60
MAX_TTL_S = 24 * 3600


class IssuerNotFound(LookupError):
    """No dev issuer where we looked; the message lists the places."""


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--scopes", default="mcp:read", help="comma-separated scopes the capability policy uses, "
                        "e.g. mcp:read,mcp:write")
    parser.add_argument("--sub", default="dev-user", help="the token subject (principal)")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_S,
                        help=f"lifetime in seconds, {MIN_TTL_S}..{MAX_TTL_S}")
    parser.add_argument("--audience", default=None,
                        help="server URL (default: the running dev server's, else $MCP_AUTH_AUDIENCE, else "
                             f"{DEFAULT_AUDIENCE})")
    parser.add_argument("--issuer-dir", "--state-dir", dest="issuer_dir", type=Path, default=None,
                        help="the dev issuer's key directory (default: the running dev server's; see --help)")
    parser.add_argument("--json", action="store_true", help="print {token, expires_at, audience, scopes} as JSON")
    parser.set_defaults(func=run_dev_token)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def find_issuer(explicit: Path | None, cwd: Path | None = None) -> tuple[Path, dict]:
    """The issuer directory to mint with, and what the running server recorded (empty if none found)."""
    from app.devstack.lock import find_running_dev

    if explicit is not None:
        return explicit, {}
    if os.environ.get("MCP_DEV_ISSUER_DIR"):
        return Path(os.environ["MCP_DEV_ISSUER_DIR"]), {}
    here = cwd or Path.cwd()
    owner, looked = find_running_dev(here)
    if owner and owner.get("issuer_dir"):
        return Path(owner["issuer_dir"]), owner
    existing = here.resolve() / DEFAULT_STATE_DIR
    if (existing / "jwks.json").exists():
        return existing, {}
    raise IssuerNotFound("no dev issuer found. Looked at: $MCP_DEV_ISSUER_DIR (unset); a running mcp-tee dev in "
                         + ", ".join(str(path) for path in looked) + f"; an existing key in {existing}. Start the "
                         "server first (`make run` in the repository), or pass --issuer-dir")


def _scopes(raw: str) -> list[str]:
    from app.capability_policy import PolicyError, load_policy

    scopes = sorted({scope.strip() for scope in raw.split(",") if scope.strip()})
    if not scopes:
        raise ValueError("--scopes needs at least one scope")
    try:
        known = load_policy(os.environ.get("MCP_CAPABILITY_POLICY") or None).all_scopes
    except PolicyError as exc:
        raise ValueError(f"cannot check --scopes: {exc}") from None
    unknown = [scope for scope in scopes if scope not in known]
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)}: the capability policy uses {', '.join(sorted(known))}")
    return scopes


def run_dev_token(args: argparse.Namespace) -> int:
    try:
        scopes = _scopes(args.scopes)
        if not MIN_TTL_S <= args.ttl <= MAX_TTL_S:
            raise ValueError(f"--ttl must be between {MIN_TTL_S} and {MAX_TTL_S} seconds")
        issuer_dir, owner = find_issuer(args.issuer_dir)
    except (ValueError, IssuerNotFound) as exc:
        print(f"mcp-tee dev-token: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_REFUSED
    audience = args.audience or owner.get("audience") or os.environ.get("MCP_AUTH_AUDIENCE") or DEFAULT_AUDIENCE
    token = DevIssuer(issuer_dir).mint(scopes=scopes, audience=audience, subject=args.sub, ttl_s=args.ttl)
    expires = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=args.ttl)
    if args.json:
        print(json.dumps({"token": token, "expires_at": expires.isoformat(), "audience": audience, "scopes": scopes}))
    else:
        print(token)
        # stderr, so that TOKEN=$(mcp-tee dev-token) captures the token alone
        print(f"dev token for {args.sub} ({' '.join(scopes)}), audience {audience}, expires {expires.isoformat()} "
              f"(in {args.ttl // 60} min); run the same command again to refresh", file=sys.stderr)
    return EXIT_OK
