"""Authorizing calls with delegated capabilities: each narrowing holds, nothing widens, budgets are exact."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from biscuit_auth import BlockBuilder

from app.delegation import authorize
from app.delegation.authorize import CallFacts, CapabilityGate
from app.delegation.errors import CapabilityRefused
from app.delegation.keys import CapabilityRoot
from app.delegation.ledger import CapabilityLedger
from app.delegation.token import REQUEST_FACTS, mint, verify_presented
from app.wire.capability_token import TOKEN_MARKER, Attenuation, attenuate
from app.guards.sql_relations import relations_read
from tests.delegation.helpers import Clock, minted

NARROW = Attenuation(tools=frozenset({"query_database", "send_notification"}), tables=frozenset({"issues", "incidents"}),
                     max_rows=50, channels=frozenset({"general"}), ttl_s=600, context="sub-agent: triage-bot")


@pytest.fixture(scope="module")
def root() -> CapabilityRoot:
    return CapabilityRoot.per_process()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gate(clock) -> CapabilityGate:
    return CapabilityGate(CapabilityLedger(), clock=clock)


def narrowed(root, attenuation=NARROW, clock=None):
    token = attenuate(minted(root), attenuation, root.public_key, now=(clock or Clock())())
    return verify_presented(token, root.public_key)


def query(sql: str, max_rows: int = 10) -> CallFacts:
    return CallFacts("query_database", relations_read(sql), max_rows=max_rows)


class TestWithinRights:
    def test_root_token_allows_its_rights(self, root, gate) -> None:
        gate.check(verify_presented(minted(root), root.public_key), CallFacts("github_search_issues"))

    @pytest.mark.parametrize("facts", [
        query("SELECT * FROM issues"),
        query("SELECT * FROM issues JOIN incidents USING (id)", max_rows=50),
        query("WITH recent AS (SELECT * FROM incidents) SELECT * FROM recent"),
        CallFacts("send_notification", channel="general"),
    ])
    def test_attenuated_token_allows_what_it_lists(self, root, gate, facts) -> None:
        gate.check(narrowed(root), facts)


class TestNarrowingHolds:
    def test_tool_outside_the_list(self, root, gate) -> None:
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(narrowed(root), CallFacts("github_search_issues"))

    @pytest.mark.parametrize("sql", [
        "SELECT * FROM secrets",
        "WITH t AS (SELECT * FROM secrets) SELECT * FROM t",
        "WITH issues AS (SELECT * FROM secrets) SELECT * FROM issues",
        "SELECT * FROM issues WHERE id IN (SELECT id FROM secrets)",
        "SELECT * FROM (SELECT * FROM secrets) s",
        "SELECT * FROM issues JOIN secrets USING (id)",
        "SELECT * FROM secret_view",
        "SELECT * FROM public.issues",
    ])
    def test_table_outside_the_list(self, root, gate, sql) -> None:
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(narrowed(root), query(sql))

    def test_more_rows_than_allowed(self, root, gate) -> None:
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(narrowed(root), query("SELECT * FROM issues", max_rows=51))

    def test_another_channel(self, root, gate) -> None:
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(narrowed(root), CallFacts("send_notification", channel="security"))

    def test_past_the_attenuated_expiry(self, root, gate, clock) -> None:
        capability = narrowed(root, clock=clock)
        gate.check(capability, query("SELECT 1"))
        clock.advance(601)
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(capability, query("SELECT 1"))

    def test_past_the_root_expiry(self, root, gate, clock) -> None:
        capability = verify_presented(minted(root, ttl_s=60), root.public_key)
        clock.advance(61)
        with pytest.raises(CapabilityRefused, match="block 0"):
            gate.check(capability, CallFacts("query_database"))

    def test_a_later_block_cannot_narrow_less(self, root, gate) -> None:
        # The child lists every tool again; the parent's narrower list still applies.
        child = attenuate(TOKEN_MARKER + narrowed(root).token.to_base64(),
                          Attenuation(tools=frozenset({"github_search_issues", "query_database"})), root.public_key)
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(verify_presented(child, root.public_key), CallFacts("github_search_issues"))


class TestNothingWidens:
    def test_right_fact_in_a_later_block_grants_nothing(self, root, gate) -> None:
        parent = verify_presented(minted(root, rights={"query_database"}), root.public_key).token
        widened = parent.append(BlockBuilder('right("send_notification"); right({t});', {"t": "github_search_issues"}))
        capability = verify_presented(TOKEN_MARKER + widened.to_base64(), root.public_key)
        assert capability.rights == {"query_database"}
        for tool in ("send_notification", "github_search_issues"):
            with pytest.raises(CapabilityRefused, match="grants no right"):
                gate.check(capability, CallFacts(tool, channel="general"))

    def test_request_fact_stated_by_a_block_does_not_satisfy_another_block(self, root, gate) -> None:
        capability = narrowed(root)
        forged = capability.token.append(BlockBuilder('table("issues"); max_rows(1); channel("general");'))
        with pytest.raises(CapabilityRefused, match="block 1"):
            gate.check(verify_presented(TOKEN_MARKER + forged.to_base64(), root.public_key), query("SELECT * FROM secrets"))

    def test_tool_not_in_the_root_rights(self, root, gate) -> None:
        capability = verify_presented(minted(root, rights={"query_database"}), root.public_key)
        with pytest.raises(CapabilityRefused, match="grants no right"):
            gate.check(capability, CallFacts("send_notification", channel="general"))


# Attenuation blocks a sub-agent may append: each passes presentation (no rule runs there) and then
# makes the call's evaluation fail rather than answer.
UNEVALUABLE_BLOCKS = {
    "fact explosion past the limits": " ".join(f"f({n});" for n in range(40)) + " pair($a, $b) <- f($a), f($b), tool($t);",
    "integer overflow": "check if 9223372036854775807 + 1 > 0;",
    "division by zero": "check if 1 / 0 == 1;",
}


class TestFailClosed:
    @pytest.mark.parametrize("block", UNEVALUABLE_BLOCKS.values(), ids=UNEVALUABLE_BLOCKS.keys())
    def test_a_block_that_cannot_be_evaluated_is_refused_and_spends_nothing(self, root, gate, block) -> None:
        parent = narrowed(root, Attenuation(max_calls=1))
        hostile = TOKEN_MARKER + parent.token.append(BlockBuilder(block)).to_base64()
        with pytest.raises(CapabilityRefused, match="could not be evaluated") as refused:
            gate.check(verify_presented(hostile, root.public_key), CallFacts("query_database"))
        assert hostile[len(TOKEN_MARKER):][:24] not in str(refused.value)
        gate.check(parent, CallFacts("query_database"))  # the one call in the budget is still there

    def test_a_fact_outside_the_vocabulary_is_never_stated(self, root, gate, monkeypatch) -> None:
        """Unreachable but by a bug: the server states a fact its vocabulary lacks (here `channel`, as if
        the vocabulary had drifted). No public input reaches this, so the drift is made by hand."""
        monkeypatch.setattr(authorize, "REQUEST_FACTS", REQUEST_FACTS - {"channel"})
        capability = narrowed(root, Attenuation(max_calls=1))
        with pytest.raises(CapabilityRefused, match="outside its vocabulary"):
            gate.check(capability, CallFacts("send_notification", channel="general"))
        monkeypatch.undo()
        gate.check(capability, CallFacts("send_notification", channel="general"))  # nothing was spent


class TestRevocation:
    def test_revoked_root_and_every_descendant_refused(self, root, gate, clock) -> None:
        token = minted(root)
        parent = verify_presented(token, root.public_key)
        child = verify_presented(attenuate(token, Attenuation(max_rows=5), root.public_key), root.public_key)
        grandchild = verify_presented(attenuate(TOKEN_MARKER + child.token.to_base64(), Attenuation(max_rows=1),
                                                root.public_key), root.public_key)
        gate.ledger.record_mint(parent.revocation_ids[0], "alice", parent.expires_at, clock())
        gate.check(grandchild, query("SELECT 1", max_rows=1))
        gate.ledger.revoke(parent.revocation_ids[0], by="alice")
        for capability in (parent, child, grandchild):
            with pytest.raises(CapabilityRefused, match="revoked"):
                gate.check(capability, query("SELECT 1", max_rows=1))

    def test_only_the_minter_revokes(self, root, gate, clock) -> None:
        capability = verify_presented(minted(root), root.public_key)
        gate.ledger.record_mint(capability.revocation_ids[0], "alice", capability.expires_at, clock())
        for who, rid in (("mallory", capability.revocation_ids[0]), ("alice", "00" * 64)):
            with pytest.raises(CapabilityRefused, match="no capability you minted"):
                gate.ledger.revoke(rid, by=who)
        gate.check(capability, CallFacts("query_database"))


class TestCallBudget:
    def test_budget_is_exact_under_concurrency(self, root, gate) -> None:
        capability = narrowed(root, Attenuation(max_calls=20))
        allowed, refused = [], []
        barrier = threading.Barrier(8)

        def worker() -> None:
            barrier.wait()
            for _ in range(10):
                try:
                    gate.check(capability, CallFacts("query_database"))
                    allowed.append(1)
                except CapabilityRefused:
                    refused.append(1)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(allowed) == 20 and len(refused) == 60

    def test_children_share_their_parents_budget(self, root, gate) -> None:
        parent = narrowed(root, Attenuation(max_calls=3))
        parent_text = TOKEN_MARKER + parent.token.to_base64()
        first = verify_presented(attenuate(parent_text, Attenuation(context="one"), root.public_key), root.public_key)
        second = verify_presented(attenuate(parent_text, Attenuation(context="two"), root.public_key), root.public_key)
        for capability in (first, second, parent):
            gate.check(capability, CallFacts("query_database"))
        for capability in (first, second, parent):
            with pytest.raises(CapabilityRefused, match="block 1"):
                gate.check(capability, CallFacts("query_database"))

    def test_refused_calls_spend_nothing(self, root, gate) -> None:
        capability = narrowed(root, Attenuation(tools=frozenset({"query_database"}), max_calls=1))
        with pytest.raises(CapabilityRefused):
            gate.check(capability, CallFacts("send_notification", channel="general"))
        gate.check(capability, CallFacts("query_database"))

    def test_ledger_full_of_live_entries_refuses(self, root, clock) -> None:
        gate = CapabilityGate(CapabilityLedger(capacity=2), clock=clock)
        gate.check(narrowed(root, Attenuation(max_rows=1)), CallFacts("query_database"))
        with pytest.raises(CapabilityRefused, match="too many live"):
            gate.check(narrowed(root, Attenuation(max_rows=1)), CallFacts("query_database"))

    def test_expired_entries_make_room(self, root, clock) -> None:
        ledger = CapabilityLedger(capacity=1)
        gate = CapabilityGate(ledger, clock=clock)
        gate.check(verify_presented(minted(root, ttl_s=60), root.public_key), CallFacts("query_database"))
        clock.advance(61)
        later = mint(root, subject="alice", scopes={"mcp:read"}, rights={"query_database"},
                     expires_at=clock() + timedelta(hours=1))
        gate.check(verify_presented(later, root.public_key), CallFacts("query_database"))
        assert len(ledger) == 1
