"""Per-session HPKE sealing: only the session key opens, tampering and replays are refused."""

from __future__ import annotations

import pytest

from app.wire.runtime_data import b64url, b64url_decode
from app.wire.session_seal import SessionKey, SessionSealError, seal_to_session


class TestSessionSealing:
    def test_the_session_key_opens_what_was_sealed_to_it(self) -> None:
        key = SessionKey.generate()
        assert key.open(seal_to_session(key.public_b64url, b"scoped-token")) == b"scoped-token"

    def test_public_key_is_32_raw_bytes_base64url(self) -> None:
        assert len(b64url_decode(SessionKey.generate().public_b64url)) == 32

    def test_repr_never_shows_the_private_key(self) -> None:
        assert "public=" in repr(SessionKey.generate())


class TestFailClosed:
    def test_another_session_cannot_open(self) -> None:
        sealed = seal_to_session(SessionKey.generate().public_b64url, b"scoped-token")
        with pytest.raises(SessionSealError):
            SessionKey.generate().open(sealed)

    def test_tampered_ciphertext_is_refused(self) -> None:
        key = SessionKey.generate()
        raw = bytearray(b64url_decode(seal_to_session(key.public_b64url, b"scoped-token")))
        raw[-1] ^= 0x01
        with pytest.raises(SessionSealError):
            key.open(b64url(bytes(raw)))

    @pytest.mark.parametrize("sealed", ["", "!!!", "A" * 10, "x" * (64 * 1024 + 1)])
    def test_garbage_is_refused(self, sealed: str) -> None:
        with pytest.raises(SessionSealError):
            SessionKey.generate().open(sealed)

    @pytest.mark.parametrize("public", ["", "not base64 at all", b64url(b"short")])
    def test_sealing_to_a_bad_public_key_is_refused(self, public: str) -> None:
        with pytest.raises(SessionSealError):
            seal_to_session(public, b"x")
