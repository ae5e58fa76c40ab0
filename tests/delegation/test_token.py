"""Presented tokens: only a chain signed by this server's root verifies; the root block is read back exactly."""

from __future__ import annotations

import pytest
from biscuit_auth import Biscuit, BiscuitBuilder, BlockBuilder, KeyPair

from app.delegation.errors import CapabilityRefused
from app.delegation.keys import CapabilityRoot
from app.delegation.token import verify_presented
from app.wire.capability_token import MAX_BLOCKS, MAX_TOKEN_CHARS, TOKEN_MARKER, Attenuation, attenuate
from tests.delegation.helpers import ALL_RIGHTS, NOW, minted


@pytest.fixture(scope="module")
def root() -> CapabilityRoot:
    return CapabilityRoot.per_process()


class TestVerifiedAuthority:
    def test_reads_principal_scopes_rights_expiry_and_ids(self, root) -> None:
        capability = verify_presented(minted(root), root.public_key)
        assert capability.root_subject == "alice"
        assert capability.scopes == {"mcp:read", "mcp:write"}
        assert capability.rights == ALL_RIGHTS
        assert capability.expires_at > NOW
        assert len(capability.revocation_ids) == 1 and capability.contexts == ()

    def test_chain_records_each_block_and_its_context(self, root) -> None:
        child = attenuate(minted(root), Attenuation(max_rows=5, context="sub-agent: triage-bot"), root.public_key)
        grandchild = attenuate(child, Attenuation(max_rows=1), root.public_key)
        chain = verify_presented(grandchild, root.public_key).chain
        assert [block["context"] for block in chain] == [None, "sub-agent: triage-bot", None]
        assert len({block["revocation_id"] for block in chain}) == 3

    def test_repr_hides_the_token(self, root) -> None:
        token = minted(root)
        assert token[len(TOKEN_MARKER):][:40] not in repr(verify_presented(token, root.public_key))


class TestRefusedTokens:
    def test_token_minted_by_another_key(self, root) -> None:
        with pytest.raises(CapabilityRefused, match="not signed by the capability root"):
            verify_presented(minted(CapabilityRoot.per_process()), root.public_key)

    def test_truncated_token(self, root) -> None:
        token = minted(root)
        with pytest.raises(CapabilityRefused, match="malformed"):
            verify_presented(token[:-20], root.public_key)

    def test_tampered_token(self, root) -> None:
        token = minted(root)
        middle = len(token) // 2
        flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
        with pytest.raises(CapabilityRefused):
            verify_presented(flipped, root.public_key)

    def test_missing_marker(self, root) -> None:
        with pytest.raises(CapabilityRefused, match="starts with"):
            verify_presented(minted(root)[len(TOKEN_MARKER):], root.public_key)

    def test_oversized_token(self, root) -> None:
        with pytest.raises(CapabilityRefused, match="longer than"):
            verify_presented(TOKEN_MARKER + "A" * (MAX_TOKEN_CHARS + 1), root.public_key)

    def test_too_many_blocks(self, root) -> None:
        token = Biscuit.from_base64(minted(root)[len(TOKEN_MARKER):], root.public_key)
        for _ in range(MAX_BLOCKS):
            token = token.append(BlockBuilder("check if true;"))
        with pytest.raises(CapabilityRefused, match="more than"):
            verify_presented(TOKEN_MARKER + token.to_base64(), root.public_key)

    def test_root_block_without_minted_facts(self, root) -> None:
        # Signed by the right key but not shaped like a minted root (no principal, no expiry).
        forged = BiscuitBuilder('right("query_database");').build(root.private_key)
        with pytest.raises(CapabilityRefused, match="not one this server mints"):
            verify_presented(TOKEN_MARKER + forged.to_base64(), root.public_key)

    def test_refusal_never_quotes_the_token(self, root) -> None:
        token = minted(CapabilityRoot.per_process())
        with pytest.raises(CapabilityRefused) as refused:
            verify_presented(token, root.public_key)
        assert token[len(TOKEN_MARKER):][:24] not in str(refused.value)

    def test_keypair_unrelated_to_root_refused(self) -> None:
        other = KeyPair()
        root = CapabilityRoot.per_process()
        with pytest.raises(CapabilityRefused):
            verify_presented(minted(root), other.public_key)
