"""`mcp-tee check`: validate what `serve` would start with, and reach each upstream, without serving anything.

Checks, in order: the settings (the same validation `serve` runs, the bind rule included), the
capability policy, which tools the credentials at hand enable, then one harmless probe per
upstream: an HTTP request without credentials to the GitHub API and the issuer's JWKS, a Postgres
login running `SELECT 1`, a TCP connection to the webhook's host (posting would send a message),
and the SKR sidecar's `/status` in TEE mode. Output never contains a credential: messages are
built from exception types and status codes, and any secret value is scrubbed before printing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from app.cli.commands import register_module
from app.cli.serve import EXIT_CONFIG, add_serve_arguments

EXIT_OK, EXIT_PROBLEM = 0, 1
PASS, FAIL, INFO = "✓", "✗", "–"


@dataclass(frozen=True)
class Finding:
    """One line of the check."""

    check: str
    ok: bool
    detail: str
    informational: bool = False


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    add_serve_arguments(parser)
    parser.add_argument("--tee", action="store_true", default=None, help="check TEE mode (same as MCP_TEE_MODE=tee)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per upstream probe")
    parser.add_argument("--json", action="store_true", help="print {ok, checks} as JSON")
    parser.set_defaults(func=run_check)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def _http_probe(url: str, timeout: float) -> str:
    import httpx

    response = httpx.get(url, timeout=timeout, follow_redirects=False)
    return f"reachable (HTTP {response.status_code})"


def _postgres_probe(dsn: str, timeout: float) -> str:
    import psycopg

    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout))) as conn:
        conn.execute("SELECT 1")
    return "login and SELECT 1 succeeded"


def _tcp_probe(url: str, timeout: float) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname, port), timeout=timeout):
        pass
    return f"{parts.hostname}:{port} accepts connections (nothing posted)"


def _probe(check: str, probe: Callable[[], str], *, uses_secret: bool) -> Finding:
    try:
        return Finding(check, True, probe())
    except Exception as exc:  # any failure to reach is the finding
        if uses_secret:
            # A driver may quote any piece of the secret it was given (psycopg quotes a bad password
            # fragment), which no exact-match scrub catches: name the failure class and SQLSTATE only.
            sqlstate = getattr(exc, "sqlstate", None)
            return Finding(check, False, f"unreachable: {type(exc).__name__}" + (f" (SQLSTATE {sqlstate})"
                                                                                  if sqlstate else ""))
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return Finding(check, False, f"unreachable: {type(exc).__name__}: {detail}")


def _findings(args: argparse.Namespace, env: Mapping[str, str]) -> list[Finding]:
    from app.capability_policy import PolicyError, load_policy
    from app.config import ConfigError, load_settings
    from app.secrets import DB_CONNECTION_STRING, GITHUB_TOKEN, WEBHOOK_URL
    from app.secrets.env import load_env_secrets
    from app.server.run import refuse_exposed_bind_without_auth

    try:
        settings = load_settings(env, host=args.host, port=args.port, transport=args.transport, tee=args.tee)
        refuse_exposed_bind_without_auth(settings)
    except ConfigError as exc:
        return [Finding("configuration", False, str(exc))]
    findings = [Finding("configuration", True, f"mode {settings.mode}, {settings.transport} on "
                        f"{settings.host}:{settings.port}, auth {'on' if settings.auth else 'off'}, "
                        f"audit to {settings.audit_log}")]
    try:
        policy = load_policy(settings.capability_policy)
    except PolicyError as exc:
        return [*findings, Finding("capability policy", False, str(exc))]
    findings.append(Finding("capability policy", True, f"{len(policy.tools)} tools, scopes "
                            f"{', '.join(sorted(policy.all_scopes))}"))
    timeout = args.timeout
    if settings.auth is not None and not settings.auth.jwks_url.startswith("file:"):
        findings.append(_probe("auth issuer JWKS", lambda: _http_probe(settings.auth.jwks_url, timeout),
                                uses_secret=False))
    if settings.tee_mode:
        return [*findings, *_tee_findings(env, timeout)]
    secrets = load_env_secrets(env)
    for name, failure in sorted(secrets.failures.items()):
        findings.append(Finding(f"secret {name}", True, f"{failure}: its tool is disabled", informational=True))
    if secrets.get(GITHUB_TOKEN):
        findings.append(_probe("upstream github", lambda: _http_probe(settings.github_api_url, timeout),
                               uses_secret=False))
    if secrets.get(DB_CONNECTION_STRING):
        findings.append(_probe("upstream postgres",
                               lambda: _postgres_probe(secrets.get(DB_CONNECTION_STRING), timeout), uses_secret=True))
    if secrets.get(WEBHOOK_URL):
        findings.append(_probe("upstream webhook", lambda: _tcp_probe(secrets.get(WEBHOOK_URL), timeout),
                               uses_secret=True))
    return findings


def _tee_findings(env: Mapping[str, str], timeout: float) -> list[Finding]:
    from app.attestation.runtime import TeeConfig, TeeStartupError
    from app.secrets.tee_release import refuse_plaintext_env

    try:
        refuse_plaintext_env(env)
        config = TeeConfig.from_env(env)
    except TeeStartupError as exc:
        return [Finding("TEE configuration", False, str(exc))]
    return [Finding("TEE configuration", True, f"key {config.key_name} in {config.akv_endpoint}, "
                    f"attestation by {config.maa_endpoint}"),
            _probe("SKR sidecar", lambda: _http_probe(f"{config.skr_endpoint.rstrip('/')}/status", timeout),
                   uses_secret=False)]


def run_check(args: argparse.Namespace) -> int:
    """Print one line per check; exit 0 when nothing is wrong, 1 naming the problem, 2 for bad settings."""
    findings = _findings(args, os.environ)
    ok = all(finding.ok for finding in findings)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(finding) for finding in findings]}))
    else:
        for finding in findings:
            mark = INFO if finding.informational else PASS if finding.ok else FAIL
            print(f"{mark} {finding.check}: {finding.detail}")
        print("ready to serve" if ok else "not ready: fix the ✗ lines above", file=sys.stderr)
    if not ok and findings[0].check == "configuration" and not findings[0].ok:
        return EXIT_CONFIG
    return EXIT_OK if ok else EXIT_PROBLEM
