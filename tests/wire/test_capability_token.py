"""The capability wire format: offline attenuation with validated inputs, parameters never spliced into Datalog."""

from __future__ import annotations

import pytest

from app.delegation.keys import CapabilityRoot
from app.delegation.token import verify_presented
from app.wire.capability_token import MAX_BLOCKS, Attenuation, attenuate, is_capability
from tests.delegation.helpers import minted


@pytest.fixture(scope="module")
def root() -> CapabilityRoot:
    return CapabilityRoot.per_process()


class TestAttenuate:
    def test_appends_one_block_per_call(self, root) -> None:
        token = minted(root)
        for expected in (2, 3):
            token = attenuate(token, Attenuation(max_rows=10), root.public_key)
            assert verify_presented(token, root.public_key).token.block_count() == expected

    def test_refuses_a_token_that_does_not_verify(self, root) -> None:
        with pytest.raises(ValueError, match="not signed by the capability root"):
            attenuate(minted(CapabilityRoot.per_process()), Attenuation(max_rows=1), root.public_key)

    def test_refuses_past_the_block_limit(self, root) -> None:
        token = minted(root)
        for _ in range(MAX_BLOCKS - 1):
            token = attenuate(token, Attenuation(max_rows=1), root.public_key)
        with pytest.raises(ValueError, match="already has"):
            attenuate(token, Attenuation(max_rows=1), root.public_key)

    def test_names_are_parameters_not_source(self, root) -> None:
        token = attenuate(minted(root), Attenuation(tables=frozenset({"a.b", "x$y"})), root.public_key)
        source = verify_presented(token, root.public_key).token.block_source(1)
        assert source.count("reject if") == 1 and '"a.b"' in source


class TestAttenuationValidation:
    @pytest.mark.parametrize("kwargs", [
        {"tools": frozenset()},
        {"tables": frozenset({'issues"); right("x'})},
        {"channels": frozenset({"has space"})},
        {"max_rows": 0},
        {"max_rows": True},
        {"max_calls": -1},
        {"ttl_s": 0},
        {"ttl_s": 10**9},
        {"context": 'quote " inside'},
        {"context": "x" * 81},
        {"tools": frozenset(f"t{i}" for i in range(65))},
    ])
    def test_bad_input_refused(self, kwargs) -> None:
        with pytest.raises(ValueError):
            Attenuation(**kwargs)


class TestMarker:
    def test_capability_and_jwt_are_told_apart(self) -> None:
        root = CapabilityRoot.per_process()
        jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
        assert is_capability(minted(root)) and not is_capability(jwt_like)
        assert "~" not in jwt_like and "~" not in minted(root).removeprefix("biscuit~")
