"""The agent's rules for a server's attestation answer, stated once for every path that receives one.

Threat model: an ``attestation_status`` answer is attacker-supplied until its
token verifies, and even then only the *signed* runtime data counts. A relay
or a hostile operator can replay an old answer, swap the session, audit or
capability key advertised next to the token, hand over a token from another
deployment, issuer or server (another TLS key), or strip the evidence and hope
the client carries on. The agent meets these answers on two paths:
:class:`app.agent.AttestedSession` (it drives the official client itself) and
:meth:`app.agent.AttestedChannel.verify_status` (for clients that drive MCP
themselves). Both call :func:`check_status`, so a rule cannot hold on one path
and be missing on the other. In order, the first failure refuses:

1. the answer is an object that reports a TEE and carries a token and its runtime data;
2. the token comes from the issuer *we* trust (never one the server names) and verifies: signature,
   hostdata, lifetime, *our* nonce, and the runtime data it signs is exactly the one in the answer;
3. the signed runtime data binds a well-formed X25519 session key, the tool list this client received,
   the audit key and the capability key the answer advertises;
4. last, it binds the TLS key this client pinned.

Every refusal goes through :func:`refuse`; the pre-auth route (:func:`app.agent.channel.attest_channel`)
verifies its token with the same :func:`verify_token`.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from typing import Any, Mapping, NoReturn
from urllib.parse import urlsplit

import jwt

from app.agent.delegation import check_capability_key
from app.agent.errors import ChannelNotAttested, VerificationFailed
from app.agent.report import NOT_ATTESTED, VerificationReport
from app.agent.trust import TrustPolicy
from app.attestation.errors import UntrustedIssuerUrl
from app.attestation.maa_keys import require_trusted_url
from app.attestation.verifier import check_maa_token, verify_maa_token
from app.urls import same_url
from app.wire.runtime_data import b64url_decode
from app.wire.tls_binding import TLS_SPKI_FIELD

STATUS_CHECK = "attestation_status"
TEE_CHECK = "tee_mode"
CHANNEL_CHECK = "tls_channel"
X25519_PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True)
class VerifiedStatus:
    """What a verified answer binds; every value comes from the signed claims, never from the answer around them.

    Args:
        claims: The verified token claims.
        session_pub: The X25519 key to seal layer-2 credentials to.
        audit_pub: The key that verifies the server's audit checkpoints.
        capability_pub: The capability root key (None: the server mints no capabilities).
        expires_at: The token's ``exp``, in seconds since the epoch: verify again after it.
    """

    claims: Mapping[str, Any]
    session_pub: str
    audit_pub: str
    capability_pub: str | None
    expires_at: int


def refuse(report: VerificationReport, check: str, detail: str) -> NoReturn:
    """Every refusal: add the ✗ line, then raise with the report.

    Raises:
        ChannelNotAttested: the TLS binding failed (``check`` is ``tls_channel``).
        VerificationFailed: any other check failed.
    """
    if check == CHANNEL_CHECK:
        report.failed(check, f"ChannelNotAttested: {detail}")
        raise ChannelNotAttested(detail, report)
    report.failed(check, detail)
    raise VerificationFailed(report)


async def check_status(report: VerificationReport, status: Any, nonce: str, *, trust: TrustPolicy,
                       pinned_spki: str | None, tools_digest: str | None, presented_capability: str | None,
                       now: float | None = None) -> VerifiedStatus:
    """Check an ``attestation_status(nonce)`` answer; every check lands in ``report``.

    Args:
        report: Where the ✓/✗ lines go.
        status: The tool's structured answer, untouched.
        nonce: The nonce this client sent with the call.
        trust: The issuer and hostdata we trust.
        pinned_spki: The TLS key this connection is pinned to; None (plain HTTP, an unconfirmed pin) refuses.
        tools_digest: :func:`app.wire.runtime_data.tools_digest` of the ``tools/list`` this client received.
            None only where the caller has no tool list to bind (``verify_status`` without ``tools``):
            then the tool list is not checked.
        presented_capability: The capability this client presents as its bearer, which must chain to the
            attested capability key; None when it presents none, or does not say (``verify_status``
            without ``bearer``).
        now: The clock for the token's lifetime (default: the wall clock).

    Raises:
        VerificationFailed: a check failed (``report.first_failure`` names it).
        ChannelNotAttested: the answer binds another TLS key than the pinned one, or nothing is pinned.
    """
    if not isinstance(status, Mapping):
        refuse(report, STATUS_CHECK, "no structured status in the answer")
    attestation = status.get("attestation")
    if status.get("running_in_tee") is not True or not isinstance(attestation, Mapping):
        report.attested = False
        refuse(report, TEE_CHECK, f"{NOT_ATTESTED}: the server reports no TEE evidence")
    report.passed(TEE_CHECK, str(status.get("tee_type", "tee")))
    token, runtime = attestation.get("token"), attestation.get("runtime")
    if not isinstance(token, str) or not isinstance(runtime, Mapping):
        refuse(report, STATUS_CHECK, "the attestation carries no token or runtime data")
    claims = await asyncio.to_thread(verify_token, report, trust, token, nonce=nonce, runtime=runtime, now=now)
    signed = claims["x-ms-runtime"]
    session_pub = _session_key(report, signed)
    if tools_digest is not None:
        _check_tools_digest(report, signed, tools_digest)
    audit_pub = _audit_key(report, signed, status.get("audit_public_key"))
    if not check_capability_key(report, signed, status.get("capability_public_key"), presented_capability):
        raise VerificationFailed(report)  # check_capability_key added the ✗ line
    _check_tls_binding(report, signed, pinned_spki)
    return VerifiedStatus(claims=claims, session_pub=session_pub, audit_pub=audit_pub,
                          capability_pub=report.capability_public_key, expires_at=int(claims["exp"]))


def verify_token(report: VerificationReport, trust: TrustPolicy, token: str, *, nonce: str,
                 runtime: Mapping[str, Any], now: float | None) -> dict[str, Any]:
    """Issuer, signature, hostdata, lifetime, our nonce, the exact runtime data and its report data.

    Blocking (it may fetch the issuer's signing keys): run it in a thread. Returns the verified claims.
    """
    if not isinstance(nonce, str) or not nonce:
        # Fail closed: without our nonce the verifier skips freshness, and a replayed answer would pass.
        refuse(report, "nonce", "no nonce to check freshness against: pass the nonce this client sent")
    untrusted = _untrusted_issuer(trust, token)
    if untrusted is not None:
        refuse(report, "trusted_issuer", untrusted)
    report.passed("trusted_issuer", trust.issuer + (" (development issuer, NOT A TEE)" if trust.dev_issuer else ""))
    options = dict(issuer=trust.issuer, expected_hostdata=trust.expected_hostdata, nonce=nonce,
                   expected_runtime=runtime, leeway=trust.leeway_s, now=now)
    for result in check_maa_token(token, **options):
        if not result.ok:
            refuse(report, result.check, result.detail)
        if not result.skipped:
            report.passed(result.check, result.detail)
    claims = verify_maa_token(token, **options)
    report.hostdata, report.issuer = claims.get("x-ms-sevsnpvm-hostdata"), claims.get("iss")
    report.expires_at = int(claims["exp"])
    return claims


def _session_key(report: VerificationReport, signed: Mapping[str, Any]) -> str:
    """The key credentials are sealed to; the answer's copy of it is covered by the exact runtime match."""
    session_pub = signed.get("session_pub")
    try:
        well_formed = len(b64url_decode(session_pub)) == X25519_PUBLIC_KEY_BYTES
    except (TypeError, ValueError):
        well_formed = False
    if not well_formed:
        refuse(report, "session_pub", "the token binds no X25519 session key")
    report.session_pub = session_pub
    report.passed("session_pub", "the signed runtime data binds this session's key")
    return session_pub


def _check_tools_digest(report: VerificationReport, signed: Mapping[str, Any], digest: str) -> None:
    signed_digest = signed.get("tools_digest")
    if not isinstance(signed_digest, str) or not hmac.compare_digest(signed_digest, digest):
        refuse(report, "tools_digest", "the attested tool list differs from the tools/list this client received "
                                       "(a tool was added or changed)")
    report.tools_digest = digest
    report.passed("tools_digest", f"the tools/list this client received, sha256 {digest[:16]}…")


def _audit_key(report: VerificationReport, signed: Mapping[str, Any], advertised: Any) -> str:
    """The audit log's verification key must come from the signed evidence, not an unsigned field."""
    signed_key = signed.get("audit_pub")
    if not isinstance(signed_key, str) or not signed_key:
        refuse(report, "audit_key", "the token binds no audit-signing key")
    if advertised != signed_key:
        refuse(report, "audit_key", "the audit key the server advertises is not the one the token binds")
    report.audit_public_key = signed_key
    report.passed("audit_key", f"audit checkpoints are signed by {signed_key[:16]}… (bound into the attestation)")
    return signed_key


def _check_tls_binding(report: VerificationReport, signed: Mapping[str, Any], pinned_spki: str | None) -> None:
    """Last, after the content checks: the answer must come from the server at the other end of *this* pin."""
    if pinned_spki is None:
        refuse(report, CHANNEL_CHECK, "no attested TLS key is pinned for this connection (plain HTTP cannot be "
                                      "pinned); use the server's https:// URL")
    bound = signed.get(TLS_SPKI_FIELD)
    if not isinstance(bound, str) or not hmac.compare_digest(bound, pinned_spki):
        refuse(report, CHANNEL_CHECK, "this answer's attestation binds another TLS key than the pinned one")
    report.tls_spki_sha256 = bound
    report.passed(CHANNEL_CHECK, "this answer's attestation binds the pinned TLS key")


def _untrusted_issuer(trust: TrustPolicy, token: str) -> str | None:
    """Why the token is not from the issuer *we* trust, or None; explains an emulator token without the opt-in."""
    issuer = _unverified_issuer(token)
    if issuer is not None and same_url(issuer, trust.issuer):
        return None
    if issuer is not None and _is_dev_issuer(issuer) and not trust.dev_issuer:
        return (f"the token comes from development issuer {issuer} (the emulator, NOT A TEE); "
                "refusing it without --trust-dev-issuer")
    return f"the token's issuer {str(issuer)[:100]} is not the trusted {trust.issuer}"


def _unverified_issuer(token: str) -> str | None:
    """The token's ``iss`` before verification: only to explain a refusal, never to decide trust."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return issuer if isinstance(issuer, str) else None


def _is_dev_issuer(url: str) -> bool:
    """An http issuer that the URL rules accept can only be a loopback one: the emulator."""
    try:
        require_trusted_url(url, "issuer")
    except UntrustedIssuerUrl:
        return False
    return urlsplit(url).scheme == "http"
