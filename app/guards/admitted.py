"""The SQL guard with a memory: a caller's repeated statement is not parsed again.

An agent often sends the same text more than once (a retry, a poll, the same report each turn).
Parsing it with pglast and walking the tree is most of what `query_database` costs this process
(about 0.2 ms of a 1 ms database call on the full server), so the admissions are remembered.

Threat model:
    The guard is a pure function of the text: the same string always gets the same verdict, so a
    remembered admission is exactly the guard's answer. What memory adds is what it could leak or
    exhaust, and each is closed here:

    - Timing. A remembered statement is answered faster. Were the memory shared, a caller could
      time a guess at another caller's query (say one with an e-mail address in its WHERE) and
      learn that somebody ran it. Entries are kept per caller, so a fast answer only tells a
      caller about its own past. A caller that cannot be told apart from another (a delegated
      capability carries its delegator's subject) passes no caller, and nothing is remembered.
      The database keeps no per-text state either: the caller's statement is never prepared on
      the server (`app/upstreams/postgres.py`), where a cached plan would be shared by every caller.
    - Crowding out. One caller cannot evict another's entries (`FairLru`), so nobody can make
      another's calls slower by flooding.
    - Memory. At most `REMEMBERED_TOTAL` entries, each of a text no longer than
      `REMEMBERED_MAX_CHARS`; longer texts are checked every time.
    - Activity. Once the total cap is reached, a caller can notice its own entries being pushed
      out and so learn that others are running new statements, but nothing of what they are.
    - Refusals are never remembered. Each refused text goes through the guard again, so every
      refusal is logged and audited like the first one.

    Keys are the exact text: no normalisation, which could make two different statements one.
    Not thread-safe: the tools run on the event loop, and nothing here awaits.
"""

from __future__ import annotations

from app.fair_lru import FairLru
from app.guards.sql import GuardedQuery, guard_sql

# Admissions remembered for one caller, and for everybody together.
REMEMBERED_PER_CALLER = 64
REMEMBERED_TOTAL = 1024
# Longest text remembered, in characters. An entry holds the text and the statement cut from it
# (often the same object), at most 4 bytes a character: about 17 MB for the whole memory at worst.
REMEMBERED_MAX_CHARS = 2048


class AdmittedQueries:
    """`guard_sql` per caller, answering a text it already admitted for that caller from memory.

    Example:
        admitted = AdmittedQueries()
        admitted.check("alice", "SELECT 1")  # parsed and walked
        admitted.check("alice", "SELECT 1")  # the same GuardedQuery, from memory
    """

    def __init__(self, *, per_caller: int = REMEMBERED_PER_CALLER, total: int = REMEMBERED_TOTAL) -> None:
        self._admitted: FairLru[GuardedQuery] = FairLru(per_owner=per_caller, total=total)

    def check(self, caller: str | None, sql: str) -> GuardedQuery:
        """The guard's verdict on `sql` for `caller`; with no caller, nothing is remembered.

        Raises:
            SqlRejected: When the guard refuses `sql`; the refusal is not remembered.
        """
        if caller is None or not isinstance(sql, str) or len(sql) > REMEMBERED_MAX_CHARS:
            return guard_sql(sql)
        admitted = self._admitted.get(caller, sql)
        if admitted is None:
            admitted = guard_sql(sql)
            self._admitted.put(caller, sql, admitted)
        return admitted
