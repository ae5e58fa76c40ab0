"""Authorize one call against a verified capability: the call's facts, every block's checks, the ledger.

Threat model: the token's checks are only as good as the facts the server states, so the
facts come from the server alone: the tool being called, every relation the SQL reads (from
the parse tree, never from the caller's say-so), the row limit the tool will apply, the
channel, the time and the call counts. The only allow policy is ``tool($t), right($t)`` over
the root block's rights; every check of every block must also pass. Revocation and budgets
are checked in the same locked step (see ``ledger``). Refusals name the kind of failure and the
block, never the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from biscuit_auth import AuthorizationError

from app.delegation.errors import reject
from app.delegation.ledger import CapabilityLedger
from app.delegation.token import REQUEST_FACTS, VerifiedCapability, authorizer_builder

ALLOW_POLICY = "allow if tool($t), right($t);"
_FAILED_BLOCK = re.compile(r"in block n°(\d+)")
_NO_POLICY = "no matching policy"
_UNEVALUATED = "the capability could not be evaluated for this call"


@dataclass(frozen=True)
class CallFacts:
    """What the server states about one call.

    Args:
        tool: The tool being called.
        tables: Every relation the query reads (``relations_read``), for ``query_database``.
        max_rows: The row limit the tool will apply, for ``query_database``.
        channel: The channel posted to, for ``send_notification``.
    """

    tool: str
    tables: frozenset[str] = frozenset()
    max_rows: int | None = None
    channel: str | None = None


class CapabilityGate:
    """Checks calls made with capability tokens.

    Args:
        ledger: Revocations and call counts.
        clock: Wall-clock now (UTC); injectable for expiry tests.

    Example:
        >>> gate = CapabilityGate(CapabilityLedger())
        >>> gate.check(capability, CallFacts("query_database", frozenset({"issues"}), max_rows=50))  # doctest: +SKIP
    """

    def __init__(self, ledger: CapabilityLedger,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.ledger = ledger
        self._clock = clock

    def check(self, capability: VerifiedCapability, facts: CallFacts) -> None:
        """Return when every check passes and the call is counted; raise `CapabilityRefused` otherwise."""
        now = self._clock()

        def authorize(counts: dict[int, int]) -> None:
            builder = authorizer_builder(ALLOW_POLICY)
            for name, terms in _stated_facts(facts, now, counts):
                parameters = {f"p{index}": term for index, term in enumerate(terms)}
                builder.add_code(f"{name}({', '.join('{' + key + '}' for key in parameters)});", parameters)
            try:
                builder.build(capability.token).authorize()
            except AuthorizationError as exc:
                _refuse(str(exc), facts.tool)
            except Exception:  # Fail closed: an evaluation error (limits, bad token) is a refusal.
                reject(_UNEVALUATED)

        self.ledger.admit_call(capability.revocation_ids, capability.expires_at, now, authorize)


def _stated_facts(facts: CallFacts, now: datetime, counts: dict[int, int]) -> list[tuple[str, tuple]]:
    """Every fact the server states for this call, each from the ``REQUEST_FACTS`` vocabulary."""
    stated = [("time", (now,)), ("tool", (facts.tool,))]
    stated += [("table", (table,)) for table in sorted(facts.tables)]
    stated += [("max_rows", (facts.max_rows,))] if facts.max_rows is not None else []
    stated += [("channel", (facts.channel,))] if facts.channel is not None else []
    stated += [("call_count", (index, count)) for index, count in counts.items()]
    if not {name for name, _ in stated} <= REQUEST_FACTS:
        reject("the server tried to state a fact outside its vocabulary")  # Fail closed: a bug here is a refusal.
    return stated


def _refuse(detail: str, tool: str) -> None:
    """Turn Biscuit's failure (which quotes the token's checks) into a short refusal naming the block."""
    blocks = sorted({int(index) for index in _FAILED_BLOCK.findall(detail)})
    if blocks:
        where = ", ".join(map(str, blocks))
        reject(f"the delegated capability does not allow this call: a check in block {where} failed "
               "(tool, table, max_rows, channel, expiry or call budget)")
    if _NO_POLICY not in detail:  # Biscuit reports its limits, overflow and division by zero this way too.
        reject(_UNEVALUATED)
    reject(f"the delegated capability grants no right to call {tool[:64]!r}")
