"""The agent's side of delegation: check the attested capability key, and keep tokens chained to it.

Threat model: a capability is only worth handing on if the attested code, and nothing else,
can mint and check it. So the capability root key is taken only from the *signed* runtime data
(``capability_pub``), never from the unsigned field the server also advertises; a minted token
is accepted only if its chain verifies against that key (a relay cannot hand back a token of its
own); and a capability is sent only after the channel's pre-auth attestation (which binds
``capability_pub`` next to the TLS key) shows that it chains to the attested root, so a
capability for server A never reaches server B, which could replay it to A. That gate is
:meth:`app.agent.AttestedChannel.http_client`, which every client on the channel comes from;
the answer to ``attestation_status`` is checked the same way (:func:`check_capability_key`).
Reports name keys by prefix and never contain a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from app.agent.errors import AgentError
from app.agent.report import VerificationReport
from app.wire.capability_token import Attenuation, attenuate, is_capability, public_key_from_b64, verified_chain

CHECK = "capability_root"


class CapabilityNotAttested(AgentError):
    """A capability token does not chain to the capability key the server's attestation binds."""


class MintRefused(AgentError):
    """The server refused to mint a capability (its reason is in the message)."""


@dataclass(frozen=True)
class MintedCapability:
    """A root capability the server minted for this session's principal.

    Args:
        token: ``biscuit~...``; send it as ``Authorization: Bearer`` or narrow it first.
        revocation_id: Revokes this token and every token narrowed from it.
        rights: The tools it grants.
        expires_at: ISO 8601 expiry.
        capability_pub: The attested root key the token chains to.
    """

    token: str
    revocation_id: str
    rights: tuple[str, ...]
    expires_at: str
    capability_pub: str

    def __repr__(self) -> str:
        return f"MintedCapability(revocation_id={self.revocation_id[:16]}…, rights={self.rights})"

    def attenuate(self, narrowing: Attenuation) -> str:
        """Narrow this token offline (verified against the attested key first)."""
        return attenuate(self.token, narrowing, public_key_from_b64(self.capability_pub))


def check_capability_key(report: VerificationReport, signed: Mapping[str, Any], advertised: Any,
                         presented: str | None) -> bool:
    """Record the ``capability_root`` check; True when it passed.

    The signed runtime data must bind a capability key equal to the advertised one (servers
    without delegation bind none and pass only while nothing is presented), and a presented
    capability must chain to it.
    """
    signed_key = signed.get("capability_pub")
    if not isinstance(signed_key, str) or not signed_key:
        if presented is None:
            return True
        report.failed(CHECK, "the attestation binds no capability key, so the capability cannot be checked")
        return False
    if advertised != signed_key:
        report.failed(CHECK, "the capability key the server advertises is not the one the token binds")
        return False
    if presented is not None:
        try:
            chain_to(presented, signed_key)
        except CapabilityNotAttested as exc:
            report.failed(CHECK, str(exc))
            return False
    report.capability_public_key = signed_key
    detail = "and the presented capability chains to it" if presented is not None else "(bound into the attestation)"
    report.passed(CHECK, f"capabilities are signed by {signed_key[:16]}… {detail}")
    return True


def presented_capability(bearer: str | None) -> str | None:
    """The capability a bearer presents, or None when it is none (no bearer, or a JWT)."""
    return bearer if bearer is not None and is_capability(bearer) else None


def chain_to(token: str, capability_pub: str | None) -> None:
    """Raise :class:`CapabilityNotAttested` unless ``token`` verifies against ``capability_pub``."""
    if not capability_pub:
        raise CapabilityNotAttested("the attestation binds no capability key, so no capability chains to it")
    try:
        verified_chain(token, public_key_from_b64(capability_pub))
    except ValueError:
        raise CapabilityNotAttested("the capability token does not chain to the attested capability key") from None


def minted_from(result: Mapping[str, Any], capability_pub: str) -> MintedCapability:
    """A mint answer, accepted only when its token chains to the attested key."""
    token = result.get("capability")
    if not isinstance(token, str):
        raise CapabilityNotAttested("the server returned no capability token")
    chain_to(token, capability_pub)
    return MintedCapability(token=token, revocation_id=str(result.get("revocation_id")),
                            rights=tuple(result.get("rights") or ()), expires_at=str(result.get("expires_at")),
                            capability_pub=capability_pub)
