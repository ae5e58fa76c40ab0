"""TEE-mode evidence for `attestation_status`: a fresh MAA token binding nonce, session key and tools.

Threat model: `running_in_tee: true` is a claim a client will act on (it sends
user credentials next). So it is made only when the SKR sidecar produced an
MAA token *for this request* and that token verified against the configured
issuer's keys: RS256, issuer, lifetime, SEV-SNP claims, not debuggable,
compliance, and runtime data binding {nonce, session_pub, tools_digest}.
The server cannot know which hostdata its relying party expects; it reports
the measured hostdata and the agent pins it. A nonce is single-use per session.
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
    """

    def __init__(self, runtime: TeeRuntime, sessions: NonceLedger, issuer: str, audit_pub: str) -> None:
        self._runtime = runtime
        self._sessions = sessions
        self._issuer = issuer
        self._audit_pub = audit_pub
        self._jwks = maa_jwks_cache()

    async def evidence(self, *, nonce: str | None, session_id: str, tools_digest: str) -> dict[str, Any]:
        base: dict[str, Any] = {"running_in_tee": False, "tee_type": TEE_TYPE, "attestation": None,
                                "tee_steps": self._runtime.status()}
        if nonce is None:
            return {**base, "attestation_error": "TEE mode attests per request: call attestation_status(nonce=...)"}
        session = self._sessions.consume_nonce(session_id, nonce)
        session_pub = session.key.public_b64url
        runtime = runtime_claims(nonce, session_pub, tools_digest, self._audit_pub)
        try:
            token = await self._runtime.attest(nonce, session_pub, tools_digest, self._audit_pub)
        except ValueError as exc:
            raise InvalidArgument(f"nonce refused: {exc}") from None
        except SidecarError as exc:
            return {**base, "tee_steps": self._runtime.status(), "attestation_error": f"attest failed: {exc.detail}"}
        try:
            claims = await verify_maa_token_async(
                token, issuer=self._issuer, expected_hostdata=_unverified_hostdata(token), nonce=nonce,
                expected_runtime=runtime, jwks_cache=self._jwks,
            )
        except (AttestationError, jwt.PyJWTError, ValueError) as exc:  # a malformed token fails closed too
            check = getattr(exc, "check", "malformed")
            logger.warning("own attestation token failed verification: %s", check)
            return {**base, "attestation_error": f"the attestation token failed verification ({check})"}
        session.attested = True
        return {
            **base,
            "running_in_tee": True,
            "hostdata": claims[HOSTDATA_CLAIM],
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
