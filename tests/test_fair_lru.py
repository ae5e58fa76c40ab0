"""The fair LRU: per-owner shares, the total cap as a backstop, and every eviction reported."""

from __future__ import annotations

import pytest

from app.fair_lru import FairLru


class TestFairLru:
    def test_an_owner_past_its_share_loses_its_own_least_recently_used(self):
        evicted: list[str] = []
        lru: FairLru[str] = FairLru(per_owner=2, total=10, on_evict=evicted.append)
        lru.put("bob", "b", "bob-b")
        lru.put("alice", "x", "alice-x")
        lru.put("alice", "y", "alice-y")
        assert lru.get("alice", "x") == "alice-x"  # y is now alice's least recently used
        lru.put("alice", "z", "alice-z")
        assert evicted == ["alice-y"]
        assert lru.contains("bob", "b") and lru.contains("alice", "x") and lru.contains("alice", "z")

    def test_the_total_cap_takes_from_the_largest_owner(self):
        evicted: list[str] = []
        lru: FairLru[str] = FairLru(per_owner=5, total=4, on_evict=evicted.append)
        lru.put("alice", "a", "alice-a")
        for key in "123":
            lru.put("mallory", key, f"mallory-{key}")
        lru.put("bob", "b", "bob-b")
        assert evicted == ["mallory-1"]
        assert sorted(lru.values()) == ["alice-a", "bob-b", "mallory-2", "mallory-3"]

    def test_a_removed_entry_is_not_reported_as_evicted(self):
        evicted: list[str] = []
        lru: FairLru[str] = FairLru(per_owner=1, total=1, on_evict=evicted.append)
        lru.put("alice", "a", "alice-a")
        assert lru.pop("alice", "a") == "alice-a" and lru.pop("alice", "a") is None
        lru.put("bob", "b", "bob-b")
        assert evicted == [] and list(lru.values()) == ["bob-b"]

    @pytest.mark.parametrize("caps", [{"per_owner": 0, "total": 1}, {"per_owner": 1, "total": 0}])
    def test_a_cap_without_room_is_refused(self, caps):
        with pytest.raises(ValueError, match="at least one entry"):
            FairLru(**caps)
