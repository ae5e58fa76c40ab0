"""Batch seals: every stored line must sit under a valid seal that names its blob and its exact bytes."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.batch_seal import SealError, is_seal, sealed_block, unseal_blob
from app.audit.signing import AuditSigner

KEY = Ed25519PrivateKey.generate()
SIGNER = AuditSigner(KEY)
BLOB = "mcp-tee/000000000000.jsonl"


def _lines(first: int, count: int) -> list[str]:
    return [json.dumps({"seq": seq, "prev": "0" * 64, "type": "call", "tool": "t"}, separators=(",", ":"))
            for seq in range(first, first + count)]


def _two_blocks() -> bytes:
    return sealed_block(BLOB, _lines(0, 3), SIGNER) + sealed_block(BLOB, _lines(3, 2), SIGNER)


class TestSealedBlocks:
    def test_lines_come_back_in_order_and_seals_are_set_aside(self):
        chain = unseal_blob(BLOB, _two_blocks(), [KEY.public_key()])
        assert [json.loads(line)["seq"] for line in chain] == [0, 1, 2, 3, 4]
        assert not any(is_seal(line) for line in chain)

    def test_a_seal_records_blob_range_and_count(self):
        seal = json.loads(sealed_block(BLOB, _lines(7, 2), SIGNER).split(b"\n")[-2])["batch_seal"]
        assert (seal["blob"], seal["first_seq"], seal["last_seq"], seal["records"]) == (BLOB, 7, 8, 2)


class TestTamperIsNamed:
    def test_an_edited_line(self):
        data = _two_blocks().replace(b'"tool":"t"', b'"tool":"x"', 1)
        with pytest.raises(SealError, match="does not match"):
            unseal_blob(BLOB, data, [KEY.public_key()])

    def test_a_removed_seal_leaves_lines_uncovered(self):
        lines = _two_blocks().split(b"\n")
        data = b"\n".join(lines[:3] + lines[4:])  # drop the first block's seal
        with pytest.raises(SealError, match="does not match"):
            unseal_blob(BLOB, data, [KEY.public_key()])

    def test_trailing_lines_without_a_seal(self):
        data = _two_blocks() + _lines(5, 1)[0].encode() + b"\n"
        with pytest.raises(SealError, match="not covered by a seal"):
            unseal_blob(BLOB, data, [KEY.public_key()])

    def test_a_block_moved_to_another_blob(self):
        with pytest.raises(SealError, match="does not match"):
            unseal_blob("mcp-tee/000000000099.jsonl", _two_blocks(), [KEY.public_key()])

    def test_a_seal_from_an_untrusted_key(self):
        with pytest.raises(SealError, match="no valid signature"):
            unseal_blob(BLOB, _two_blocks(), [Ed25519PrivateKey.generate().public_key()])

    def test_a_truncated_seal(self):
        data = _two_blocks()[:-20] + b"\n"
        with pytest.raises(SealError):
            unseal_blob(BLOB, data, [KEY.public_key()])
