"""``mcp-tee agent URL``: verify a server's attestation, report check by check, then optionally hand it credentials.

User tokens are read from stdin (never argv, so they stay out of shell history
and ``/proc/<pid>/cmdline``) and are sent only after every check passed,
sealed to the attested session key. Nothing the command prints contains them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.agent.attested_session import ATTESTATION_TOOL, CREDENTIALS_TOOL, AttestedSession
from app.agent.errors import AgentError, ChannelNotAttested, VerificationFailed
from app.agent.pinning import pin_refusal
from app.agent.report import VerificationReport, transport_warnings
from app.agent.trust import TrustPolicy, TrustPolicyError, load_stack_outputs, resolve_trust, stack_url
from app.cli.capability import names, parse_duration
from app.cli.commands import register_module
from app.cli.connecting import bearer_from_env, explain_connect_failure
from app.wire.credentials import DEFAULT_CREDENTIAL_TTL_S, MAX_CREDENTIAL_TTL_S

EXIT_VERIFIED = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
GITHUB_TOKEN_KIND = "github_token"


def register(subparsers: Any) -> None:
    """Add ``agent`` to an argparse subparsers object."""
    register_module(subparsers, __name__)


def configure(agent: argparse.ArgumentParser, name: str) -> None:
    agent.add_argument("url", nargs="?", help="the server's MCP URL (default: mcp_url from --stack-outputs)")
    agent.add_argument("--stack-outputs", type=Path, help="`pulumi stack output --json` file: mcp_url, "
                       "expected_hostdata, maa_endpoint")
    agent.add_argument("--expect-hostdata", help="expected hostdata: 64 hex, the SHA-256 of the CCE policy")
    agent.add_argument("--maa-endpoint", help="trusted Azure Attestation host (issuer https://HOST)")
    agent.add_argument("--trust-dev-issuer", metavar="URL", help="accept this development issuer (the local "
                       "emulator, NOT A TEE); printed as a warning")
    agent.add_argument("--json", action="store_true", help="print the report as JSON")
    agent.add_argument("--github-token-stdin", action="store_true", help="after verification, seal the GitHub "
                       "token read from stdin to the attested session and hand it to the server")
    agent.add_argument("--ttl", type=int, default=DEFAULT_CREDENTIAL_TTL_S,
                       help=f"session credential lifetime in seconds, at most {MAX_CREDENTIAL_TTL_S}")
    agent.add_argument("--check-isolation", action="store_true", help="with --github-token-stdin: replay the "
                       "sealed blob into a second session and show that it is refused there")
    agent.add_argument("--call", metavar="TOOL", help="after verification, call this tool on the same session")
    agent.add_argument("--arguments", default="{}", help="JSON object of arguments for --call")
    agent.add_argument("--auth-token-env", metavar="VAR", help="send the bearer token held in this env var "
                       "(a server with auth on answers 401 without one)")
    delegation = agent.add_argument_group("delegation (see `mcp-tee capability`)")
    delegation.add_argument("--mint-capability", metavar="FILE", type=Path, help="after verification, mint a "
                            "capability for your bearer's rights and write it to FILE (mode 0600)")
    delegation.add_argument("--capability-tools", type=names, help="with --mint-capability: only these tools")
    delegation.add_argument("--capability-ttl", type=parse_duration, help="with --mint-capability: lifetime (e.g. 1h)")
    delegation.add_argument("--capability-file", metavar="FILE", type=Path, help="present the capability in FILE "
                            "as the bearer; sent only once it chains to the attested capability key")
    agent.set_defaults(func=run_agent)


def _trust_and_url(args: argparse.Namespace) -> tuple[TrustPolicy, str]:
    outputs = load_stack_outputs(args.stack_outputs) if args.stack_outputs else {}
    url = args.url or stack_url(outputs)
    if not url:
        raise TrustPolicyError("no server URL: pass URL or --stack-outputs with mcp_url")
    trust = resolve_trust(expect_hostdata=args.expect_hostdata, maa_endpoint=args.maa_endpoint,
                          trust_dev_issuer=args.trust_dev_issuer, stack_outputs=outputs)
    return trust, url


def _read_stdin_token() -> str:
    # One trailing newline is what `echo` and here-strings add; anything else is kept and validated.
    return sys.stdin.read().removesuffix("\n").removesuffix("\r")


async def _check_isolation(report: VerificationReport, url: str, trust: TrustPolicy, bearer: str | None,
                           sealed: str) -> None:
    """Replay the same sealed blob into a second verified session: it must not open there."""
    async with AttestedSession(url, trust=trust, bearer_token=bearer) as other:
        replay = await other.call_tool(CREDENTIALS_TOOL, {"sealed": sealed})
        status = (await other.call_tool(ATTESTATION_TOOL, {})).structured_content or {}
    if replay.is_error and not status.get("session_credentials"):
        report.passed("isolation", "a second session cannot open the sealed credentials and holds none")
    else:
        report.failed("isolation", "the sealed credentials were accepted by a second session")


async def _mint_into(session: AttestedSession, args: argparse.Namespace, report: VerificationReport) -> None:
    """Mint a capability chained to the attested key and write it to a new 0600 file; report only its id."""
    minted = await session.mint_capability(sorted(args.capability_tools) if args.capability_tools else None,
                                           args.capability_ttl)
    descriptor = os.open(args.mint_capability, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(minted.token + "\n")
    report.passed("mint_capability", f"{args.mint_capability}: rights {', '.join(minted.rights)}, expires "
                                     f"{minted.expires_at}, revocation id {minted.revocation_id}")


async def _session_flow(url: str, trust: TrustPolicy, args: argparse.Namespace, token: str | None,
                        call_arguments: dict[str, Any], bearer: str | None) -> tuple[VerificationReport, Any]:
    report = VerificationReport(url=url, warnings=[*transport_warnings(url), *[w for w in (trust.warning,) if w]])
    call_result: Any = None
    try:
        async with AttestedSession(url, trust=trust, bearer_token=bearer) as session:
            report = session.report
            if args.mint_capability:
                await _mint_into(session, args, report)
            if token is not None:
                sealed = await session.seal_credentials(GITHUB_TOKEN_KIND, token, args.ttl)
                accepted = await session.provide_sealed(sealed)
                report.passed("session_credentials", f"{accepted['kind']} sealed to the attested session key, "
                                                     f"ttl {accepted['ttl_s']} s")
                if args.check_isolation:
                    await _check_isolation(report, url, trust, bearer, sealed)
            if args.call:
                result = await session.call_tool(args.call, call_arguments)
                call_result = result.structured_content if result.structured_content is not None else \
                    [part.model_dump(mode="json") for part in result.content]
                (report.failed if result.is_error else report.passed)(f"call {args.call}",
                                                                      "tool error" if result.is_error else "ok")
    except VerificationFailed as exc:
        report = exc.report
    except ChannelNotAttested as exc:  # the ✗ tls_channel line is in its report; no credential follows
        report = exc.report or report
        if exc.report is None:
            report.failed(type(exc).__name__, str(exc))
    except (AgentError, ValueError) as exc:
        report.failed(type(exc).__name__, str(exc).replace(token, "[REDACTED]") if token else str(exc))
    except Exception as exc:  # Fail closed: any transport failure is a refusal, reported by type only.
        if pin_refusal(exc) is not None:
            report.failed("ChannelNotAttested", "the server's TLS key is no longer the attested one (a restart "
                                                "means a new key): nothing was sent; run the agent again")
        else:
            report.failed("connect", await explain_connect_failure(url, bool(bearer), exc))
    return report, call_result


def run_agent(args: argparse.Namespace) -> int:
    """Verify, print one ✓/✗ line per check (or JSON); exit 0 only when everything verified."""
    try:
        trust, url = _trust_and_url(args)
        call_arguments = json.loads(args.arguments)
        if not isinstance(call_arguments, dict):
            raise ValueError("--arguments must be a JSON object")
    except (TrustPolicyError, ValueError) as exc:
        print(f"mcp-tee agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        bearer = bearer_from_env(args.auth_token_env)
    except ValueError as exc:
        print(f"mcp-tee agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.capability_file:
        if bearer is not None:
            print("mcp-tee agent: --capability-file replaces --auth-token-env; pass one", file=sys.stderr)
            return EXIT_USAGE
        try:
            bearer = args.capability_file.read_text().strip()
        except OSError as exc:
            print(f"mcp-tee agent: cannot read --capability-file ({exc.strerror})", file=sys.stderr)
            return EXIT_USAGE
    token = _read_stdin_token() if args.github_token_stdin else None
    if args.json and trust.warning:
        print(trust.warning, file=sys.stderr)
    report, call_result = asyncio.run(_session_flow(url, trust, args, token, call_arguments, bearer))
    if args.json:
        print(json.dumps({**report.as_dict(), "call_result": call_result}, indent=2))
    else:
        print(report.render())
        if call_result is not None:
            print(json.dumps(call_result, indent=2))
    return EXIT_VERIFIED if report.verified else EXIT_REFUSED
