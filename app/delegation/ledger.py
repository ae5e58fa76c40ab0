"""Server-side capability state: who minted which root, which tokens are revoked, and call counts.

Threat model: a revoked token, or any token cut from it, must never be accepted again, and a
call budget must hold exactly even when many calls race. Revocation is by revocation id: every
token carries the ids of all its ancestors' blocks, so revoking one id refuses that token and all
its descendants. Only the principal that minted a root may revoke it. All state is bounded: an
entry lives until the token it concerns expires (it is dead after that anyway), and when the
bound is reached with live entries the operation that needs room is refused (fail closed)
rather than silently dropping a revocation or resetting a budget. One lock makes the
count-check-commit of a call atomic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from app.delegation.errors import reject

MAX_TRACKED_IDS = 100_000


@dataclass
class _Entry:
    expires_at: datetime
    owner: str | None = None
    revoked: bool = False
    calls: int = 0


class CapabilityLedger:
    """Mint owners, revocations and per-block call counts, keyed by revocation id.

    Args:
        capacity: Most revocation ids tracked at once.

    Example:
        >>> ledger = CapabilityLedger()
        >>> ledger.record_mint(root_id, "alice", expires_at)  # doctest: +SKIP
        >>> ledger.revoke(root_id, by="alice", now=now)  # doctest: +SKIP
    """

    def __init__(self, capacity: int = MAX_TRACKED_IDS) -> None:
        self._capacity = capacity
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _room(self, needed: int, now: datetime) -> None:
        if len(self._entries) + needed <= self._capacity:
            return
        for rid in [rid for rid, entry in self._entries.items() if entry.expires_at < now]:
            del self._entries[rid]
        if len(self._entries) + needed > self._capacity:
            # Fail closed: forgetting a live revocation or budget would re-enable a token.
            reject("too many live capabilities are tracked; try again after some expire")

    def record_mint(self, root_id: str, owner: str, expires_at: datetime, now: datetime) -> None:
        """Remember that ``owner`` minted the root with ``root_id``, so it may revoke it."""
        with self._lock:
            self._room(1, now)
            self._entries[root_id] = _Entry(expires_at=expires_at, owner=owner)

    def revoke(self, revocation_id: str, *, by: str) -> None:
        """Revoke a root ``by`` its minter; every token cut from it is refused from now on."""
        with self._lock:
            entry = self._entries.get(revocation_id)
            if entry is None or entry.owner != by:
                # One message for unknown and foreign ids: the ledger discloses nothing about other principals.
                reject("no capability you minted has that revocation id (or it has expired)")
            entry.revoked = True

    def is_revoked(self, revocation_ids: Iterable[str]) -> bool:
        """True when any block of the chain (and so the token) has been revoked."""
        with self._lock:
            return self._any_revoked(revocation_ids)

    def _any_revoked(self, revocation_ids: Iterable[str]) -> bool:
        return any(getattr(self._entries.get(rid), "revoked", False) for rid in revocation_ids)

    def admit_call(self, revocation_ids: Iterable[str], expires_at: datetime, now: datetime,
                   authorize: Callable[[dict[int, int]], None]) -> None:
        """Refuse revoked chains; else run ``authorize`` with this call's per-block counts and commit them.

        ``authorize`` receives ``{block index: calls including this one}`` and raises to refuse; a
        refused call counts nothing. The lock spans count, check and commit, so budgets are exact.
        """
        ids = list(revocation_ids)
        with self._lock:
            if self._any_revoked(ids):
                reject("the capability token, or one it was cut from, has been revoked")
            entries = [self._entries.get(rid) for rid in ids]
            counts = {index: (entry.calls if entry else 0) + 1 for index, entry in enumerate(entries)}
            authorize(counts)
            self._room(sum(entry is None for entry in entries), now)
            for rid, entry in zip(ids, entries):
                if entry is None:
                    entry = self._entries[rid] = _Entry(expires_at=expires_at)
                entry.calls += 1
