"""TEE-mode evidence: a fresh MAA token binding nonce, session key, tools, audit key and TLS key.

Threat model: `running_in_tee: true` is a claim a client will act on (it sends
user credentials next). So it is made only when the SKR sidecar produced an
MAA token *for this request* and that token verified against the configured
issuer's keys: RS256, issuer, lifetime, SEV-SNP claims, not debuggable,
compliance, and runtime data binding {nonce, session_pub, tools_digest,
audit_pub, tls_spki_sha256}. The server cannot know which hostdata its relying
party expects; it reports the measured hostdata and the agent pins it. A nonce
is single-use per attested channel. The pre-auth route's evidence
(:meth:`TeeAttestation.public_evidence`) binds no session key: it carries
nothing of any principal, only what lets a client pin the TLS key first.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import jwt

from app.attestation.maa_keys import maa_jwks_cache
from app.attestation.runtime import TeeRuntime
from app.wire.runtime_data import runtime_claims
from app.attestation.sidecar import SidecarError
from app.attestation.verifier import verify_maa_token_async
from app.attestation.errors import AttestationError
from app.errors import InvalidArgument

logger = logging.getLogger(__name__)

TEE_TYPE = "sevsnp"
HOSTDATA_CLAIM = "x-ms-sevsnpvm-hostdata"


class AttestedSession(Protocol):
    """What evidence needs of a session: its key, and to be marked attested once evidence verified."""

    key: Any
    attested: bool


class NonceLedger(Protocol):
    """Per-session single-use nonces (implemented by `app.sessions.SessionRegistry`)."""

    def consume_nonce(self, session_id: str, nonce: str) -> AttestedSession: ...


def maa_issuer(maa_endpoint: str, override: str | None = None) -> str:
    """The issuer URL of an MAA instance host: `https://host` unless configured explicitly."""
    return (override or f"https://{maa_endpoint.removeprefix('https://').rstrip('/')}").rstrip("/")


class TeeAttestation:
    """Answers `attestation_status(nonce)` in TEE mode.

    Args:
        runtime: The started TEE runtime (sidecar client, per-step status).
        sessions: Per-MCP-session keys and used nonces.
        issuer: The MAA issuer URL whose `/certs` keys sign genuine tokens.
        audit_pub: The audit log's public key, bound into every token's runtime data.
        tls_spki_sha256: The SPKI hash of the TLS key this process serves with, bound likewise.
        capability_pub: The capability root's public key, bound likewise.
    """

    def __init__(self, runtime: TeeRuntime, sessions: NonceLedger, issuer: str, audit_pub: str,
                 tls_spki_sha256: str, capability_pub: str | None = None) -> None:
        self._runtime = runtime
        self._sessions = sessions
        self._issuer = issuer
        self._audit_pub = audit_pub
        self._tls_spki_sha256 = tls_spki_sha256
        self._capability_pub = capability_pub
        self._jwks = maa_jwks_cache()

    @property
    def issuer(self) -> str:
        return self._issuer

    async def public_evidence(self, *, nonce: str, tools_digest: str) -> dict[str, Any]:
        """The pre-auth route's answer: a verified token binding nonce, tools, audit, TLS and capability keys.

        Raises:
            ValueError: a malformed nonce.
            SidecarError: the sidecar failed, or the token it returned does not verify.
        """
        runtime = runtime_claims(nonce, None, tools_digest, self._audit_pub, tls_spki_sha256=self._tls_spki_sha256,
                                 capability_pub=self._capability_pub)
        token = await self._runtime.attest(runtime)
        if await self._verified_hostdata(token, runtime) is None:
            raise SidecarError("attest", "the attestation token failed verification")
        return {"token": token, "runtime": runtime, "issuer": self._issuer,
                "maa_endpoint": self._runtime.config.maa_endpoint}

    async def _verified_hostdata(self, token: str, runtime: dict[str, str]) -> str | None:
        """Verify our own token before vouching for it; the hostdata when it holds, None otherwise."""
        try:
            claims = await verify_maa_token_async(
                token, issuer=self._issuer, expected_hostdata=_unverified_hostdata(token), nonce=runtime["nonce"],
                expected_runtime=runtime, jwks_cache=self._jwks,
            )
        except (AttestationError, jwt.PyJWTError, ValueError) as exc:  # a malformed token fails closed too
            logger.warning("own attestation token failed verification: %s", getattr(exc, "check", "malformed"))
            return None
        return str(claims[HOSTDATA_CLAIM])

    async def evidence(self, *, nonce: str | None, session_id: str | None, tools_digest: str) -> dict[str, Any]:
        base: dict[str, Any] = {"running_in_tee": False, "tee_type": TEE_TYPE, "attestation": None,
                                "tee_steps": self._runtime.status()}
        if nonce is None:
            return {**base, "attestation_error": "TEE mode attests per request: call attestation_status(nonce=...)"}
        if session_id is None:  # Fail closed: a key must belong to a session or an attested channel.
            raise InvalidArgument("no MCP session and no attested channel to bind the evidence to")
        session = self._sessions.consume_nonce(session_id, nonce)
        runtime = runtime_claims(nonce, session.key.public_b64url, tools_digest, self._audit_pub,
                                 tls_spki_sha256=self._tls_spki_sha256,
                                 capability_pub=self._capability_pub)
        try:
            token = await self._runtime.attest(runtime)
        except ValueError as exc:
            raise InvalidArgument(f"nonce refused: {exc}") from None
        except SidecarError as exc:
            return {**base, "tee_steps": self._runtime.status(), "attestation_error": f"attest failed: {exc.detail}"}
        hostdata = await self._verified_hostdata(token, runtime)
        if hostdata is None:
            return {**base, "attestation_error": "the attestation token failed verification"}
        session.attested = True
        return {
            **base,
            "running_in_tee": True,
            "hostdata": hostdata,
            "attestation": {
                "token": token,
                "issuer": self._issuer,
                "maa_endpoint": self._runtime.config.maa_endpoint,
                "runtime": runtime,
            },
        }


def _unverified_hostdata(token: str) -> str:
    """The hostdata the token claims; the signature check that follows is what makes it count."""
    return str(jwt.decode(token, options={"verify_signature": False}).get(HOSTDATA_CLAIM, ""))
