"""The refusal budget as a library: bursts of refusals are bounded, refill with time, and stay per principal."""

from __future__ import annotations

from app.capability_policy import Quota, RefusalBudget
from app.middleware.refusals import RECENT_REFUSAL_S, RefusalLedger
from tests.support.stack import FakeClock

BUDGET = RefusalBudget(per_principal=Quota(per_minute=60, burst=3), overall=Quota(per_minute=60, burst=5))


def refuse(ledger: RefusalLedger, subject: str, times: int) -> None:
    for _ in range(times):
        ledger.charge(subject)


class TestRefusalLedger:
    def test_a_principal_past_its_burst_waits_and_refills(self):
        clock = FakeClock()
        ledger = RefusalLedger(BUDGET, clock)
        refuse(ledger, "eve", 3)
        assert ledger.wait_time("eve") > 0
        clock.advance(1.0)
        assert ledger.wait_time("eve") == 0

    def test_the_overall_budget_holds_back_only_recently_refused_principals(self):
        clock = FakeClock()
        ledger = RefusalLedger(BUDGET, clock)
        refuse(ledger, "eve", 2)
        refuse(ledger, "mallory", 2)
        refuse(ledger, "trent", 1)  # overall now empty; each principal still has budget of its own
        assert ledger.wait_time("eve") > 0 and ledger.wait_time("mallory") > 0
        assert ledger.wait_time("bob") == 0, "a principal with no refusals is never held back"
        clock.advance(RECENT_REFUSAL_S + 1)
        assert ledger.wait_time("eve") == 0

    def test_memory_is_bounded(self):
        ledger = RefusalLedger(BUDGET, FakeClock(), max_tracked=10)
        for index in range(100):
            ledger.charge(f"p{index}")
        assert ledger.tracked == 10
