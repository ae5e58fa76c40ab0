"""Shared builders for the delegation tests: a root, a minted token, a controllable clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.delegation.keys import CapabilityRoot
from app.delegation.token import mint

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)
ALL_RIGHTS = frozenset({"query_database", "send_notification", "github_search_issues", "attestation_status"})


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def minted(root: CapabilityRoot, *, rights=ALL_RIGHTS, subject: str = "alice", ttl_s: float = 3600,
           scopes=frozenset({"mcp:read", "mcp:write"})) -> str:
    return mint(root, subject=subject, scopes=scopes, rights=rights, expires_at=NOW + timedelta(seconds=ttl_s))
