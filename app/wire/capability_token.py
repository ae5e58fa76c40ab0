"""The capability token's wire format, shared by the server, the agent and the CLI: marker, key, chain, narrowing.

A capability is a Biscuit token (public-key signed blocks with Datalog checks) written as
``biscuit~<base64url>`` and presented as ``Authorization: Bearer biscuit~...``. ``~`` never occurs
in a JWT nor in Biscuit's base64url, so the marker tells the two bearer kinds apart. The root
public key (``capability_pub``, bound into the attestation) is the standard base64 of the raw
32-byte Ed25519 key.

Threat model for the holder's side: a holder narrows (``attenuate``) only a token whose chain
verifies against the attested root key, so it never hands on something the server did not
mint. A narrowing block holds checks over facts the server states about each call, with every
value passed as a Datalog parameter, never spliced into source, so a table or channel name
cannot inject a rule. Limits that do not concern a call (``max_rows`` for a notification) are
``reject if`` rules that fire only on a stated fact outside the limit; the tool list is a plain
``check if``, so every call must name a listed tool. The call budget checks
``call_count(<this block's index>, $n)``, which the server counts per revocation id of that block.
Errors are ``ValueError`` with messages that never quote the token.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from biscuit_auth import Algorithm, Biscuit, BlockBuilder, PublicKey

TOKEN_MARKER = "biscuit~"
MAX_TOKEN_CHARS = 16_384
MAX_BLOCKS = 16
ED25519_KEY_BYTES = 32
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.$-]{1,128}")
CONTEXT_PATTERN = re.compile(r"[A-Za-z0-9 :._@/+-]{1,80}")
MAX_LIST_ITEMS = 64
MAX_TTL_S = 7 * 24 * 3600


def public_key_b64(key: PublicKey) -> str:
    """Standard base64 of a raw Ed25519 public key."""
    return base64.b64encode(bytes(key.to_bytes())).decode("ascii")


def public_key_from_b64(text: str) -> PublicKey:
    """Parse ``capability_pub``; raises ``ValueError`` when it is not a 32-byte Ed25519 key."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise ValueError("capability_pub is not base64") from None
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError("capability_pub is not a 32-byte Ed25519 public key")
    return PublicKey.from_bytes(raw, Algorithm.Ed25519)


def with_marker(token: Biscuit) -> str:
    return TOKEN_MARKER + token.to_base64()


def is_capability(bearer: str) -> bool:
    """True when a bearer credential is a capability token rather than a JWT."""
    return bearer.strip().startswith(TOKEN_MARKER)


def verified_chain(text: str, root_public_key: PublicKey) -> Biscuit:
    """The Biscuit in ``biscuit~...`` after its whole signature chain verified against the root key.

    Raises:
        ValueError: No marker, oversized, malformed, another key's, tampered or too many blocks.
    """
    text = text.strip()
    if not text.startswith(TOKEN_MARKER):
        raise ValueError(f"a capability token starts with {TOKEN_MARKER!r}")
    encoded = text[len(TOKEN_MARKER):]
    if len(encoded) > MAX_TOKEN_CHARS:
        raise ValueError(f"the capability token is longer than {MAX_TOKEN_CHARS} characters")
    try:
        token = Biscuit.from_base64(encoded, root_public_key)
    except Exception:  # Fail closed: any parse or signature failure is the same refusal.
        raise ValueError("the capability token is malformed or not signed by the capability root") from None
    if token.block_count() > MAX_BLOCKS:
        raise ValueError(f"the capability token has more than {MAX_BLOCKS} blocks")
    return token


@dataclass(frozen=True)
class Attenuation:
    """What one appended block allows; None leaves a dimension as the parent had it.

    Args:
        tools: Only these tools.
        tables: ``query_database`` may read only these relations (as the SQL guard names them).
        max_rows: ``query_database`` may ask for at most this many rows.
        channels: ``send_notification`` may post only to these channels.
        ttl_s: The token expires this many seconds from now.
        max_calls: At most this many calls with this token and every token cut from it.
        context: A label the audit records, e.g. ``sub-agent: triage-bot``.

    Example:
        >>> narrow = Attenuation(tools=frozenset({"query_database"}), tables=frozenset({"issues"}), max_rows=50)
        >>> child = attenuate(parent_token, narrow, root_public_key)  # doctest: +SKIP
    """

    tools: frozenset[str] | None = None
    tables: frozenset[str] | None = None
    max_rows: int | None = None
    channels: frozenset[str] | None = None
    ttl_s: float | None = None
    max_calls: int | None = None
    context: str | None = None

    def __post_init__(self) -> None:
        for label, names in (("tools", self.tools), ("tables", self.tables), ("channels", self.channels)):
            if names is None:
                continue
            if not names or len(names) > MAX_LIST_ITEMS:
                raise ValueError(f"{label} must list 1..{MAX_LIST_ITEMS} names")
            if not all(isinstance(name, str) and NAME_PATTERN.fullmatch(name) for name in names):
                raise ValueError(f"{label}: each name is 1-128 characters of letters, digits, '_', '.', '$' or '-'")
        for label, number in (("max_rows", self.max_rows), ("max_calls", self.max_calls)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
                raise ValueError(f"{label} must be a positive integer")
        if self.ttl_s is not None and not 0 < self.ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl must be between 1 second and {MAX_TTL_S} seconds")
        if self.context is not None and not CONTEXT_PATTERN.fullmatch(self.context):
            raise ValueError("context must be 1-80 characters of letters, digits, spaces and ':._@/+-'")

    def block(self, index: int, now: datetime) -> BlockBuilder:
        """The Datalog block, for a token that will have this block at position ``index``."""
        block = BlockBuilder("")
        if self.context is not None:
            block.add_code("context({label});", {"label": self.context})
        if self.tools is not None:
            block.add_code("check if tool($t), {tools}.contains($t);", {"tools": set(self.tools)})
        if self.tables is not None:
            block.add_code("reject if table($name), !{tables}.contains($name);", {"tables": set(self.tables)})
        if self.max_rows is not None:
            block.add_code("reject if max_rows($n), $n > {max_rows};", {"max_rows": self.max_rows})
        if self.channels is not None:
            block.add_code("reject if channel($c), !{channels}.contains($c);", {"channels": set(self.channels)})
        if self.ttl_s is not None:
            expiry = now.replace(microsecond=0) + timedelta(seconds=self.ttl_s)
            block.add_code("check if time($now), $now <= {expiry};", {"expiry": expiry})
        if self.max_calls is not None:
            block.add_code("check if call_count({index}, $n), $n <= {max_calls};",
                           {"index": index, "max_calls": self.max_calls})
        return block


def attenuate(token_text: str, attenuation: Attenuation, root_public_key: PublicKey,
              *, now: datetime | None = None) -> str:
    """Verify ``token_text`` against the root public key and append ``attenuation`` (offline).

    Raises:
        ValueError: The token does not verify, or it already has the most blocks allowed.
    """
    token = verified_chain(token_text, root_public_key)
    if token.block_count() >= MAX_BLOCKS:
        raise ValueError(f"the capability token already has {MAX_BLOCKS} blocks")
    return with_marker(token.append(attenuation.block(token.block_count(), now or datetime.now(timezone.utc))))
