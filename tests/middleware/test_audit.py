"""Audit: one record per call (allowed, denied, failed), summaries instead of data, never blocking."""

from __future__ import annotations

import hashlib
import json
import sys
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import log as audit_log
from app.audit.log import AuditLog
from app.audit.signing import AuditSigner
from app.audit.verify import verify_audit_log
from app.errors import UpstreamError
from app.middleware.audit import SUPPRESSED_FLUSH_AFTER_S, SuppressedRefusals
from tests.support.stack import READ_ONLY, FakeClock, Stack

SQL = "select title from issues where id = 42"


class TestCompleteness:
    async def test_every_call_has_a_record_with_its_decision(self, tmp_path):
        stack = Stack(tmp_path, scopes=READ_ONLY)
        async with stack.client() as client:
            await client.call_tool("query_database", {"sql": SQL})
            await client.call_tool("send_notification", {"message": "hi"}, raise_on_error=False)
            await client.call_tool("debug_dump_env", {}, raise_on_error=False)
            stack.upstream_fault = UpstreamError("github", "down")
            await client.call_tool("github_search_issues", {"query": "x"}, raise_on_error=False)
            for _ in range(11):
                await client.call_tool("attestation_status", {}, raise_on_error=False)
        stack.audit.close()
        calls = stack.calls()
        assert len(calls) == 15
        summary = [(c["tool"], c["decision"]["allowed"], c["outcome"]["status"], c["outcome"]["error"]) for c in calls[:4]]
        assert summary == [
            ("query_database", True, "ok", None),
            ("send_notification", False, "error", "CapabilityDenied"),
            ("debug_dump_env", False, "error", "CapabilityDenied"),
            ("github_search_issues", True, "error", "UpstreamError"),
        ]
        assert calls[1]["decision"]["reason"].startswith("insufficient scope")
        assert calls[1]["decision"]["layer"] == "scopes"
        assert calls[-1]["decision"] == {"allowed": False, "layer": "quota", "reason": calls[-1]["decision"]["reason"]}
        assert "retry after" in calls[-1]["decision"]["reason"]
        assert all(c["principal"] == "local-dev" and c["latency_ms"] >= 0 for c in calls)

    async def test_log_verifies_after_a_session(self, tmp_path):
        stack = Stack(tmp_path)
        async with stack.client() as client:
            for index in range(12):
                await client.call_tool("query_database", {"sql": f"select {index}"}, raise_on_error=False)
        stack.audit.close()
        assert verify_audit_log(stack.audit_path, stack.signer_key.public_key()).ok
        assert sum(r["type"] == "checkpoint" for r in stack.records()) >= 3


class TestSummariesInsteadOfData:
    async def test_sql_is_recorded_as_hash_and_row_count(self, tmp_path):
        stack = Stack(tmp_path)
        async with stack.client() as client:
            await client.call_tool("query_database", {"sql": SQL, "max_rows": 5})
        stack.audit.close()
        record = stack.calls()[0]
        # The toy tool reports no fingerprint; the real one does (tests/e2e/test_capabilities.py).
        assert record["summary"] == {"sql_sha256": hashlib.sha256(SQL.encode()).hexdigest(), "row_count": 2,
                                     "sql_fingerprint": None}
        assert record["args"] == {"max_rows": 5}
        assert record["args_shape"] == {"sql": {"type": "str", "len": len(SQL)}, "max_rows": {"type": "int"}}
        assert SQL not in stack.audit_path.read_text()

    async def test_notification_is_recorded_as_length_and_channel(self, tmp_path):
        stack = Stack(tmp_path)
        async with stack.client() as client:
            await client.call_tool("send_notification", {"message": "deploy done", "channel": "ops"})
        stack.audit.close()
        record = stack.calls()[0]
        assert record["summary"] == {"message_length": 11, "channel": "ops"}
        assert "deploy done" not in stack.audit_path.read_text()


class _StuckStream:
    """A stdout stand-in whose writes hang until released, like a congested disk."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.released = threading.Event()

    def write(self, text: str) -> None:
        self.released.wait()
        self.lines.extend(text.splitlines())

    def flush(self) -> None:
        self.released.wait()


class TestRecordsBuiltAfterTheResponse:
    async def test_a_secret_forgotten_before_the_batch_is_chained_is_still_scrubbed(self, tmp_path, monkeypatch):
        monkeypatch.setattr(audit_log, "WRITE_DELAY_S", 60.0)  # the batch waits until close()
        token = "session-token-canary-7f3a9c"
        stack = Stack(tmp_path)
        stack.redactor.add_secret(token)  # as a session credential is, while its session lives
        async with stack.client() as client:
            await client.call_tool("github_search_issues", {"query": f"leak {token}"})
        assert not stack.calls(), "the record was built on the call's path"
        stack.redactor.remove_secret(token)  # the session ended before the batch was chained
        stack.audit.close()
        assert stack.calls()[0]["args"] == {"query": "leak [REDACTED]"}
        assert token not in stack.audit_path.read_text()


class TestACallIsNeverRecordedWithoutItsCaller:
    async def test_a_lone_surrogate_in_sql_keeps_the_whole_record(self, tmp_path):
        stack = Stack(tmp_path)
        async with stack.client() as client:
            await client.call_tool("query_database", {"sql": "select 1 \ud800"}, raise_on_error=False)
        stack.audit.close()
        (record,) = stack.calls()
        assert record["principal"] == "local-dev" and record["tool"] == "query_database"
        assert record["summary"]["sql_sha256"] and "unrecorded" not in record

    async def test_a_summary_that_fails_leaves_who_called_what_and_the_decision(self, tmp_path, monkeypatch):
        class BrokenHash:
            @staticmethod
            def sha256(data: bytes):
                raise ValueError("hash backend down")

        monkeypatch.setattr("app.tools.database.hashlib", BrokenHash)
        stack = Stack(tmp_path)
        async with stack.client() as client:
            await client.call_tool("query_database", {"sql": SQL})
        stack.audit.close()
        (record,) = stack.calls()
        assert (record["principal"], record["tool"], record["decision"]["allowed"]) == ("local-dev", "query_database", True)
        assert record["unrecorded"] == "ValueError" and "summary" not in record
        assert SQL not in stack.audit_path.read_text()


class TestNeverBlocksAndLosesNothing:
    def test_a_stuck_sink_does_not_block_append_and_close_flushes_all(self, monkeypatch):
        slow = _StuckStream()
        monkeypatch.setattr(sys, "stdout", slow)
        log = AuditLog("-", AuditSigner(Ed25519PrivateKey.generate()), checkpoint_every=1000)
        for index in range(200):  # every append returns while the sink has not taken a single line
            log.append({"type": "call", "n": index})
        assert slow.lines == []
        slow.released.set()
        log.close()
        records = [json.loads(line) for line in slow.lines]
        assert [r["n"] for r in records if r["type"] == "call"] == list(range(200))
        assert records[-1]["type"] == "checkpoint" and records[-1]["final"] is True

    def test_concurrent_appends_keep_one_unbroken_chain(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "a.jsonl", AuditSigner(key), checkpoint_every=7)
        workers = [threading.Thread(target=lambda: [log.append({"type": "call"}) for _ in range(100)]) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        log.close()
        result = verify_audit_log(tmp_path / "a.jsonl", key.public_key())
        assert result.ok, result.reason

    def test_append_after_close_is_refused(self, tmp_path):
        log = AuditLog(tmp_path / "a.jsonl", AuditSigner(Ed25519PrivateKey.generate()))
        log.close()
        log.close()
        with pytest.raises(RuntimeError, match="closed"):
            log.append({"type": "call"})


class TestSuppressedRefusals:
    def test_counts_are_written_after_the_window_per_principal_and_on_drain(self):
        clock = FakeClock()
        suppressed = SuppressedRefusals(clock)
        assert suppressed.add("eve") == [] and suppressed.add("eve") == []
        clock.advance(1)
        assert suppressed.add("mallory") == []
        clock.advance(SUPPRESSED_FLUSH_AFTER_S)
        due = suppressed.due()
        assert [(r["principal"], r["refused_calls"]) for r in due] == [("eve", 2), ("mallory", 1)]
        suppressed.add("eve")
        assert [(r["principal"], r["refused_calls"]) for r in suppressed.drain()] == [("eve", 1)]
