"""The sealed-secret envelope: standard JWE, any length, tamper-evident, bound to one key."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.secrets.jwe import SealingError, seal, sealed_kid, unseal


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _flip(segment: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    raw[0] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


class TestRoundTrip:
    @pytest.mark.parametrize("size", [0, 1, 100 * 1024])
    def test_any_length_round_trips(self, key: rsa.RSAPrivateKey, size: int) -> None:
        plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert unseal(seal(plaintext, key.public_key()), key) == plaintext

    def test_format_is_self_describing_jwe_compact(self, key: rsa.RSAPrivateKey) -> None:
        token = seal(b"x", key.public_key(), kid="mcp-tee-unseal")
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        assert token.count(".") == 4
        assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "mcp-tee-unseal"}
        assert sealed_kid(token) == "mcp-tee-unseal"

    def test_each_seal_uses_a_fresh_content_key(self, key: rsa.RSAPrivateKey) -> None:
        assert seal(b"same", key.public_key()) != seal(b"same", key.public_key())


class TestFailClosed:
    @pytest.mark.parametrize("segment", [0, 1, 2, 3, 4])
    def test_tampering_with_any_segment_is_refused(self, key: rsa.RSAPrivateKey, segment: int) -> None:
        parts = seal(b"canary-secret-value", key.public_key()).split(".")
        parts[segment] = _flip(parts[segment])
        with pytest.raises(SealingError) as error:
            unseal(".".join(parts), key)
        assert "canary" not in str(error.value)

    def test_wrong_key_is_refused_with_a_clear_kid_hint(self, key: rsa.RSAPrivateKey) -> None:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(SealingError, match="sealed for kid 'key-a'"):
            unseal(seal(b"v", key.public_key(), kid="key-a"), other)

    @pytest.mark.parametrize("token", ["", "not-a-jwe", "a.b.c.d.e", "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0....x"])
    def test_garbage_is_refused(self, key: rsa.RSAPrivateKey, token: str) -> None:
        with pytest.raises(SealingError):
            unseal(token, key)

    def test_other_algorithms_are_refused(self, key: rsa.RSAPrivateKey) -> None:
        parts = seal(b"v", key.public_key()).split(".")
        parts[0] = base64.urlsafe_b64encode(b'{"alg":"RSA1_5","enc":"A256GCM"}').rstrip(b"=").decode()
        with pytest.raises(SealingError, match="must use alg RSA-OAEP-256"):
            unseal(".".join(parts), key)

    def test_small_keys_are_refused(self) -> None:
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        with pytest.raises(SealingError, match="at least 2048"):
            seal(b"v", weak.public_key())
