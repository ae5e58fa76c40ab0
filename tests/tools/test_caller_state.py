"""Which state a tool call belongs to: the MCP session on 2025-11-25, the named attested channel on 2026-07-28."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.sessions import session_key
from app.tools.caller_state import CHANNEL_PREFIX, caller_state_key, named_channel, new_channel_handle
from app.wire.tls_binding import CHANNEL_META_KEY

HANDLE = new_channel_handle()


def ctx(protocol_version: str, meta: object = None, session_id: str = "sid-1") -> SimpleNamespace:
    request = SimpleNamespace(protocol_version=protocol_version, meta=meta)
    return SimpleNamespace(request_context=request, session_id=session_id)


class TestHandshakeEra:
    def test_the_session_is_the_key_and_meta_is_ignored(self):
        call = ctx("2025-11-25", {CHANNEL_META_KEY: HANDLE})
        assert caller_state_key(call, "alice") == session_key("alice", "sid-1")


class TestSessionless:
    def test_the_named_channel_is_the_key_for_this_principal_only(self):
        call = ctx("2026-07-28", {CHANNEL_META_KEY: HANDLE})
        assert caller_state_key(call, "alice") == session_key("alice", CHANNEL_PREFIX + HANDLE)
        assert caller_state_key(call, "bob") != caller_state_key(call, "alice")

    def test_a_minted_handle_wins(self):
        minted = new_channel_handle()
        assert caller_state_key(ctx("2026-07-28"), "alice", minted) == session_key("alice", CHANNEL_PREFIX + minted)

    @pytest.mark.parametrize("meta", [None, {}, {CHANNEL_META_KEY: ""}, {CHANNEL_META_KEY: "short"},
                                      {CHANNEL_META_KEY: HANDLE + "x"}, {CHANNEL_META_KEY: "../" + HANDLE[3:]},
                                      {CHANNEL_META_KEY: 42}, ["not", "a", "dict"]])
    def test_no_or_a_malformed_handle_means_no_state(self, meta):
        call = ctx("2026-07-28", meta)
        assert named_channel(call) is None and caller_state_key(call, "alice") is None

    def test_handles_are_256_bit_and_unique(self):
        assert len(HANDLE) == 43 and new_channel_handle() != HANDLE
