"""Per-session state: bounded, TTL-checked, single-use nonces, forgotten when the session ends."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from app.auth.principal import LOCAL_SUBJECT
from app.errors import InvalidArgument
from app.server.session_end import ForgetEndedSessions
from app.sessions import (MAX_NONCES_PER_SESSION, MAX_REMEMBERED_NONCES, MAX_REMEMBERED_NONCES_PER_PRINCIPAL,
                          SessionRegistry, session_key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestSessionRegistry:
    def test_each_session_gets_its_own_key(self):
        sessions = SessionRegistry()
        assert sessions.get("a").key.public_b64url != sessions.get("b").key.public_b64url
        assert sessions.get("a") is sessions.get("a")

    def test_a_nonce_is_single_use(self):
        sessions = SessionRegistry()
        sessions.consume_nonce("a", "n" * 20)
        sessions.consume_nonce("b", "n" * 20)  # another session may use the same nonce
        with pytest.raises(InvalidArgument, match="already used"):
            sessions.consume_nonce("a", "n" * 20)

    def test_a_nonce_is_single_use_per_principal_across_sessions_and_channels(self):
        registry = SessionRegistry()
        registry.consume_nonce(session_key("alice", "session-1"), "n" * 32)
        with pytest.raises(InvalidArgument, match="already used"):
            registry.consume_nonce(session_key("alice", "channel:minted-later"), "n" * 32)
        registry.consume_nonce(session_key("bob", "channel:his-own"), "n" * 32)  # another principal's nonce space

    def test_credentials_expire_and_stay_in_their_session(self):
        clock = Clock()
        sessions = SessionRegistry(clock=clock)
        sessions.add_credential("a", "github_token", "user-token-canary", ttl_s=60)
        assert sessions.credential("a", "github_token") == "user-token-canary"
        assert sessions.credential("b", "github_token") is None
        assert sessions.active_credentials("a") == [{"kind": "github_token", "expires_in_s": 60}]
        clock.now += 61
        assert sessions.credential("a", "github_token") is None
        assert sessions.active_credentials("a") == []

    def test_ttl_is_capped(self):
        clock = Clock()
        sessions = SessionRegistry(clock=clock)
        sessions.add_credential("a", "github_token", "t", ttl_s=10**9)
        assert sessions.active_credentials("a")[0]["expires_in_s"] == 3600

    def test_the_map_is_bounded(self):
        sessions = SessionRegistry(max_sessions=3)
        first = sessions.get("s0").key
        for index in range(1, 5):
            sessions.get(f"s{index}")
        assert sessions.get("s0").key is not first, "the least recently used session was forgotten"

    def test_every_forgotten_value_is_reported_so_the_redactor_can_drop_it(self):
        clock, forgotten = Clock(), []
        sessions = SessionRegistry(clock=clock, max_sessions=2, on_forget=forgotten.append)
        sessions.add_credential("expires", "github_token", "token-expired", ttl_s=10)
        sessions.add_credential("replaced", "github_token", "token-old", ttl_s=600)
        sessions.add_credential("replaced", "github_token", "token-new", ttl_s=600)
        clock.now += 11
        sessions.get("another")  # the sweep runs on access; the LRU evicts the oldest session
        sessions.discard("replaced")
        assert sorted(forgotten) == ["token-expired", "token-new", "token-old"]

    def test_repr_never_shows_a_credential(self):
        sessions = SessionRegistry()
        credential = sessions.add_credential("a", "github_token", "user-token-canary", ttl_s=60)
        assert "user-token-canary" not in repr(credential)


class TestSessionsBelongToTheirPrincipal:
    def test_the_same_session_id_names_different_sessions_for_different_callers(self):
        sessions = SessionRegistry()
        alice = session_key("alice", "sid-1")
        sessions.add_credential(alice, "github_token", "alice-token-canary", ttl_s=60)
        sessions.consume_nonce(alice, "n" * 20)
        mallory = session_key("mallory", "sid-1")
        assert mallory != alice
        assert sessions.credential(mallory, "github_token") is None
        sessions.consume_nonce(mallory, "n" * 20)  # no collision with alice's used nonces
        assert sessions.get(mallory).key.public_b64url != sessions.get(alice).key.public_b64url


class TestOnePrincipalCannotEvictAnother:
    """A principal past its share loses its own oldest session; the global cap evicts the largest holder."""

    def test_a_principal_past_its_share_loses_its_own_oldest_session(self):
        forgotten: list[str] = []
        sessions = SessionRegistry(max_sessions=100, max_sessions_per_principal=3, on_forget=forgotten.append)
        alice = session_key("alice", "channel:a")
        sessions.add_credential(alice, "github_token", "alice-token-canary", ttl_s=600)
        mallory = [session_key("mallory", f"channel:{index}") for index in range(10)]
        for index, key in enumerate(mallory):
            sessions.add_credential(key, "github_token", f"mallory-token-{index}", ttl_s=600)
        assert sessions.credential(alice, "github_token") == "alice-token-canary"
        assert [sessions.credential(key, "github_token") for key in mallory[-3:]] == [
            "mallory-token-7", "mallory-token-8", "mallory-token-9"]
        assert forgotten == [f"mallory-token-{index}" for index in range(7)], "each eviction reaches the redactor"

    def test_the_global_cap_evicts_from_the_principal_holding_the_most(self):
        forgotten: list[str] = []
        sessions = SessionRegistry(max_sessions=6, max_sessions_per_principal=4, on_forget=forgotten.append)
        victims = [session_key(name, "sid") for name in ("alice", "bob")]
        for key in victims:
            sessions.add_credential(key, "github_token", f"{key}-canary", ttl_s=600)
        for attacker in ("eve", "mallory"):
            for index in range(4):
                sessions.add_credential(session_key(attacker, f"channel:{index}"), "github_token",
                                        f"{attacker}-{index}", ttl_s=600)
        assert [sessions.credential(key, "github_token") for key in victims] == [f"{key}-canary" for key in victims]
        assert sorted(forgotten) == ["eve-0", "eve-1", "mallory-0", "mallory-1"]

    def test_among_equal_holders_the_one_idle_longest_is_evicted(self):
        sessions = SessionRegistry(max_sessions=2)
        first = sessions.get(session_key("alice", "sid")).key
        sessions.get(session_key("bob", "sid"))
        sessions.get(session_key("alice", "sid"))  # alice is busy, bob idles
        sessions.get(session_key("carol", "sid"))
        assert sessions.get(session_key("alice", "sid")).key is first
        assert sessions.credential(session_key("bob", "sid"), "github_token") is None

    def test_using_a_credential_keeps_its_session_recent(self):
        sessions = SessionRegistry(max_sessions_per_principal=2)
        used, idle = session_key("alice", "used"), session_key("alice", "idle")
        sessions.add_credential(used, "github_token", "used-token", ttl_s=600)
        sessions.add_credential(idle, "github_token", "idle-token", ttl_s=600)
        assert sessions.credential(used, "github_token") == "used-token"
        sessions.get(session_key("alice", "new"))
        assert sessions.credential(used, "github_token") == "used-token"
        assert sessions.credential(idle, "github_token") is None

    def test_another_principals_nonces_cannot_push_out_a_remembered_nonce(self):
        """Before the fair cap, 16 385 nonces of mallory's made the server forget alice's."""
        sessions = SessionRegistry()
        sessions.consume_nonce(session_key("alice", "session-1"), "a" * 32)
        for index in range(MAX_REMEMBERED_NONCES + 1):
            sessions.consume_nonce(session_key("mallory", f"sid-{index // MAX_NONCES_PER_SESSION}"), f"m{index:031d}")
        with pytest.raises(InvalidArgument, match="already used"):
            sessions.consume_nonce(session_key("alice", "channel:later"), "a" * 32)
        assert MAX_REMEMBERED_NONCES_PER_PRINCIPAL < MAX_REMEMBERED_NONCES
        sessions.consume_nonce(session_key("mallory", "channel:later"), f"m{0:031d}")  # her own oldest was dropped


class TestForgetEndedSessions:
    async def transport(self, status: int):
        sessions = SessionRegistry()
        sessions.add_credential(session_key(LOCAL_SUBJECT, "abc"), "github_token", "t", ttl_s=60)

        async def mcp(request):
            return Response(status_code=status)

        app = ForgetEndedSessions(Starlette(routes=[Route("/mcp", mcp, methods=["DELETE", "POST"])]), sessions, "/mcp")
        return sessions, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")

    async def test_a_terminated_session_is_forgotten(self):
        sessions, client = await self.transport(200)
        async with client:
            await client.delete("/mcp", headers={"Mcp-Session-Id": "abc"})
        assert sessions.credential(session_key(LOCAL_SUBJECT, "abc"), "github_token") is None

    async def test_a_refused_termination_forgets_nothing(self):
        sessions, client = await self.transport(404)
        async with client:
            await client.delete("/mcp", headers={"Mcp-Session-Id": "abc"})
            await client.post("/mcp", headers={"Mcp-Session-Id": "abc"})
        assert sessions.credential(session_key(LOCAL_SUBJECT, "abc"), "github_token") == "t"
