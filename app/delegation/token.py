"""Capability tokens: the Datalog vocabulary, minting a root block, and verifying a presented token.

Threat model: a presented token is attacker-controlled bytes. It counts only after its whole
signature chain verifies against this server's root key; a token from another key, a truncated
or tampered one, an oversized one or one with too many blocks is refused before any Datalog
runs. Rights live only in the first (authority) block, which only the root key signs; facts a
later block adds (``right("send_notification")``) are visible to that block's own checks and
nowhere else, so an appended block can narrow and never widen. Datalog evaluation runs under
explicit limits (facts, iterations, time), so a hostile block cannot stall the server. The
token text itself is a bearer secret: it is never logged, never put in an error, and the audit
sees only its revocation ids. Every refusal takes one path, ``reject``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from biscuit_auth import AuthorizerBuilder, Biscuit, BiscuitBuilder, PublicKey, Rule

from app.delegation.errors import reject
from app.delegation.keys import CapabilityRoot
from app.wire.capability_token import verified_chain, with_marker

# Datalog evaluation limits for every authorizer this server runs.
MAX_FACTS = 1000
MAX_ITERATIONS = 100
MAX_EVALUATION_TIME = timedelta(milliseconds=200)

# Facts only the root (authority) block carries.
AUTHORITY_FACTS = frozenset({"principal", "scope", "right", "expires"})
# Facts the server states about each call; attenuation checks may use only these.
REQUEST_FACTS = frozenset({"time", "tool", "table", "max_rows", "channel", "call_count"})
# The one fact an attenuation block may state for itself: a label the audit records.
CONTEXT_FACT = "context"
_CONTEXT_LINE = re.compile(r'^context\("([A-Za-z0-9 :._@/+-]{1,80})"\);$')

_AUTHORITY_QUERIES = {name: Rule(f"q($v) <- {name}($v)") for name in sorted(AUTHORITY_FACTS)}


@dataclass(frozen=True)
class VerifiedCapability:
    """A presented token whose signature chain verified against the root key.

    Args:
        token: The parsed Biscuit (kept only to authorize calls; never printed).
        root_subject: The principal that minted it.
        scopes: That principal's scopes at mint time.
        rights: The tools the root block grants.
        expires_at: The root block's expiry.
        revocation_ids: One per block, root first (hex); what the audit records instead of the token.
        contexts: Each attenuation block's optional `context` label (None when absent or unreadable).
    """

    token: Biscuit = field(repr=False, compare=False)
    root_subject: str
    scopes: frozenset[str]
    rights: frozenset[str]
    expires_at: datetime
    revocation_ids: tuple[str, ...]
    contexts: tuple[str | None, ...]

    @property
    def chain(self) -> list[dict[str, object]]:
        """Each block's revocation id and context label, root first."""
        return [{"revocation_id": rid, "context": label} for rid, label in zip(self.revocation_ids, (None, *self.contexts))]

    def audit_record(self) -> dict[str, object]:
        """What the audit records about a call made with this capability: never the token itself."""
        return {"root_principal": self.root_subject, "chain": self.chain}


def mint(root: CapabilityRoot, *, subject: str, scopes: Iterable[str], rights: Iterable[str],
         expires_at: datetime) -> str:
    """A root capability for ``subject`` granting ``rights`` until ``expires_at`` (text with the marker).

    Example:
        >>> token = mint(CapabilityRoot.per_process(), subject="alice", scopes={"mcp:read"},
        ...              rights={"query_database"}, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    """
    rights = sorted(set(rights))
    if not rights:
        reject("there is nothing to delegate: no tool is both permitted and delegable")
    builder = BiscuitBuilder("principal({subject}); expires({expires}); check if time($now), $now <= {expires};",
                             {"subject": subject, "expires": expires_at})
    for scope in sorted(set(scopes)):
        builder.add_code("scope({scope});", {"scope": scope})
    for right in rights:
        builder.add_code("right({tool});", {"tool": right})
    return with_marker(builder.build(root.private_key))


def authorizer_builder(source: str = "", parameters: dict | None = None) -> AuthorizerBuilder:
    """An authorizer builder with this server's evaluation limits."""
    builder = AuthorizerBuilder(source, parameters or {}) if source else AuthorizerBuilder()
    limits = builder.limits()
    limits.max_facts, limits.max_iterations, limits.max_time = MAX_FACTS, MAX_ITERATIONS, MAX_EVALUATION_TIME
    builder.set_limits(limits)
    return builder


def verify_presented(text: str, root_public_key: PublicKey) -> VerifiedCapability:
    """Verify a presented ``biscuit~...`` token against the root public key and read its authority.

    Raises:
        CapabilityRefused: Missing marker, oversized, malformed, wrong key, tampered, too many blocks
            or an authority block without the facts a minted token always has.
    """
    try:
        token = verified_chain(text, root_public_key)
    except ValueError as exc:
        reject(str(exc))
    try:
        authorizer = authorizer_builder().build(token)
        values = {name: [fact.terms[0] for fact in authorizer.query(rule)] for name, rule in _AUTHORITY_QUERIES.items()}
    except Exception:  # Fail closed: an authority we cannot read grants nothing.
        reject("the capability token's root block cannot be read")
    subjects, expiries = values["principal"], values["expires"]
    if len(subjects) != 1 or len(expiries) != 1 or not isinstance(expiries[0], datetime):
        reject("the capability token's root block is not one this server mints")
    return VerifiedCapability(
        token=token, root_subject=str(subjects[0]), scopes=frozenset(map(str, values["scope"])),
        rights=frozenset(map(str, values["right"])), expires_at=expiries[0],
        revocation_ids=tuple(token.revocation_ids),
        contexts=tuple(_context_label(token.block_source(index)) for index in range(1, token.block_count())),
    )


def _context_label(source: str) -> str | None:
    """A block's `context("...")` label, read only when unambiguous (block printing does not escape strings)."""
    lines = [line for line in source.splitlines() if CONTEXT_FACT in line]
    match = _CONTEXT_LINE.match(lines[0]) if len(lines) == 1 else None
    return match.group(1) if match else None
