"""The capability root key: deterministic from a seed, dev keys persisted privately, sources say NOT A TEE."""

from __future__ import annotations

import os

import pytest

from app.delegation.keys import DEV_ROOT_KEY_FILE, SOURCE_DEV_STATE, SOURCE_PER_PROCESS, SOURCE_TEE, CapabilityRoot
from app.wire.capability_token import public_key_from_b64


class TestCapabilityRoot:
    def test_same_seed_same_key(self) -> None:
        seed = os.urandom(32)
        assert CapabilityRoot.from_seed(seed, SOURCE_TEE).public_key_b64 == CapabilityRoot.from_seed(seed, SOURCE_TEE).public_key_b64

    def test_only_a_tee_root_is_attested(self) -> None:
        assert CapabilityRoot.from_seed(os.urandom(32), SOURCE_TEE).attested
        root = CapabilityRoot.per_process()
        assert not root.attested and "NOT A TEE" in root.source

    def test_per_process_roots_differ(self) -> None:
        assert CapabilityRoot.per_process().public_key_b64 != CapabilityRoot.per_process().public_key_b64

    def test_dev_state_dir_persists_the_key_privately(self, tmp_path) -> None:
        first = CapabilityRoot.from_dev_state_dir(tmp_path / "state")
        second = CapabilityRoot.from_dev_state_dir(tmp_path / "state")
        assert first.public_key_b64 == second.public_key_b64
        assert first.source == SOURCE_DEV_STATE and "NOT A TEE" in first.source
        assert (tmp_path / "state" / DEV_ROOT_KEY_FILE).stat().st_mode & 0o777 == 0o600

    def test_repr_never_shows_the_private_key(self) -> None:
        root = CapabilityRoot.per_process()
        assert repr(root) == f"CapabilityRoot(source={SOURCE_PER_PROCESS!r})"

    @pytest.mark.parametrize("seed", [b"", b"x" * 31, b"x" * 33])
    def test_wrong_seed_length_refused(self, seed: bytes) -> None:
        with pytest.raises(ValueError):
            CapabilityRoot.from_seed(seed, SOURCE_TEE)

    def test_unknown_source_refused(self) -> None:
        with pytest.raises(ValueError):
            CapabilityRoot.from_seed(os.urandom(32), "trust me")


class TestPublicKeyEncoding:
    def test_round_trip(self) -> None:
        root = CapabilityRoot.per_process()
        assert bytes(public_key_from_b64(root.public_key_b64).to_bytes()) == bytes(root.public_key.to_bytes())

    @pytest.mark.parametrize("text", ["not base64!", "AAAA", ""])
    def test_bad_key_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            public_key_from_b64(text)
