"""Offline attenuation: any holder appends a block of checks that only narrows what a token allows.

Threat model: the holder narrowing a token is trusted only with its own token. Appending needs
no secret, only the root public key (``capability_pub`` from the attestation), and the chain is
verified against it first, so a holder never narrows, and hands on, a token it cannot trust.
Every check is written over facts the server states about each call (``REQUEST_FACTS``), with
values passed as Datalog parameters, never spliced into source, so a table or channel name
cannot inject a rule. Restrictions that do not apply to a call (``max_rows`` for a notification)
are ``reject if`` rules that fire on any stated fact outside the limit and hold vacuously
otherwise, while the tool list is a plain ``check if``: a call must name a listed tool. The call budget is a check on ``call_count(<this block's index>, $n)``,
which the server counts per revocation id of that block, so siblings cut from one parent do not
share a budget and a child cannot reset its parent's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from biscuit_auth import Biscuit, BlockBuilder

from app.delegation.errors import reject
from app.delegation.token import CONTEXT_PATTERN, MAX_BLOCKS, strip_marker, with_marker

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.$-]{1,128}")
MAX_LIST_ITEMS = 64
MAX_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Attenuation:
    """What one appended block allows; None leaves a dimension as the parent had it.

    Args:
        tools: Only these tools.
        tables: ``query_database`` may read only these relations (as ``relations_read`` names them).
        max_rows: ``query_database`` may ask for at most this many rows.
        channels: ``send_notification`` may post only to these channels.
        ttl_s: The token expires this many seconds from now.
        max_calls: At most this many calls with this token or any token cut from it.
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
                reject(f"{label} must list 1..{MAX_LIST_ITEMS} names")
            if not all(isinstance(name, str) and NAME_PATTERN.fullmatch(name) for name in names):
                reject(f"{label}: each name is 1-128 characters of letters, digits, '_', '.', '$' or '-'")
        for label, number in (("max_rows", self.max_rows), ("max_calls", self.max_calls)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
                reject(f"{label} must be a positive integer")
        if self.ttl_s is not None and not 0 < self.ttl_s <= MAX_TTL_S:
            reject(f"ttl must be between 1 second and {MAX_TTL_S} seconds")
        if self.context is not None and not CONTEXT_PATTERN.fullmatch(self.context):
            reject("context must be 1-80 characters of letters, digits, spaces and ':._@/+-'")

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


def attenuate(token_text: str, attenuation: Attenuation, root_public_key: object,
              *, now: datetime | None = None) -> str:
    """Verify ``token_text`` against the root public key and append ``attenuation`` (offline).

    Raises:
        CapabilityRefused: The token does not verify, or it already has the most blocks allowed.
    """
    encoded = strip_marker(token_text)
    try:
        token = Biscuit.from_base64(encoded, root_public_key)
    except Exception:  # Fail closed: never narrow and hand on a token that does not verify.
        reject("the capability token is malformed or not signed by the given capability root")
    if token.block_count() >= MAX_BLOCKS:
        reject(f"the capability token already has {MAX_BLOCKS} blocks")
    block = attenuation.block(token.block_count(), now or datetime.now(timezone.utc))
    return with_marker(token.append(block))
