"""The writer thread: chains in append order, never loses a slot, and hands out signed heads."""

from __future__ import annotations

import json

import pytest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.log import AuditLog, AuditSigner
from app.audit.verify import verify_audit_log


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


class TestChaining:
    def test_records_are_chained_in_append_order_with_the_append_time(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key), checkpoint_every=4)
        for index in range(10):
            log.append({"type": "call", "n": index})
        log.close()
        written = records(tmp_path / "audit.jsonl")
        assert [record["n"] for record in written if record["type"] == "call"] == list(range(10))
        assert [record["seq"] for record in written] == list(range(len(written)))
        assert all(record["time"].endswith("+00:00") for record in written)
        assert verify_audit_log(tmp_path / "audit.jsonl", key.public_key()).ok

    def test_an_unserialisable_record_takes_its_slot_as_unwritable_and_the_chain_goes_on(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key))
        looped: dict = {"type": "call"}
        looped["self"] = looped  # json.dumps refuses a circular record
        log.append(looped)
        log.append({"type": "call", "n": 2})
        log.close()
        kinds = [record["type"] for record in records(tmp_path / "audit.jsonl")]
        assert kinds == ["open", "unwritable", "call", "checkpoint"]
        assert verify_audit_log(tmp_path / "audit.jsonl", key.public_key()).ok


class TestSignedHead:
    async def test_a_head_is_returned_once_its_line_is_written(self, tmp_path):
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(Ed25519PrivateKey.generate()))
        log.append({"type": "call"})
        head = await log.signed_head()
        on_disk = records(tmp_path / "audit.jsonl")
        assert on_disk[head["seq"]] == head["checkpoint"] and head["checkpoint"]["type"] == "checkpoint"
        log.close()

    async def test_a_recent_head_is_reused_and_an_old_one_is_not(self, tmp_path):
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(Ed25519PrivateKey.generate()))
        first = await log.signed_head()
        log.append({"type": "call"})
        assert await log.signed_head(max_age_s=60) == first
        fresh = await log.signed_head(max_age_s=0)
        assert fresh["seq"] > first["seq"]
        log.close()

    async def test_a_closed_log_gives_no_head(self, tmp_path):
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(Ed25519PrivateKey.generate()))
        log.close()
        with pytest.raises(RuntimeError, match="closed"):
            await log.signed_head()
