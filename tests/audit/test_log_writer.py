"""The audit log's writer: chains in append order, batches on the event loop, never loses a slot, hands out signed heads."""

from __future__ import annotations

import asyncio
import json
import time
import threading

import pytest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.log import AuditLog, AuditLogClosed
from app.audit.signing import AuditSigner
from app.audit.recovery import GENESIS
from app.audit.verify import verify_audit_log


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


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


class Sink:
    """An AuditSink in memory; `fail` makes writes raise, `gate` holds them until set."""

    def __init__(self, *, fail: bool = False) -> None:
        self.lines: list[str] = []
        self.writes = 0
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def chain_head(self):
        return 0, GENESIS

    def write_lines(self, lines):
        self.gate.wait(5)
        if self.fail:
            raise OSError("no space left on device")
        self.lines.extend(lines)
        self.writes += 1

    def has_room(self) -> bool:
        return True

    @property
    def pending(self) -> int:
        return 0

    def close(self) -> None:
        pass


class Unprintable:
    def __str__(self) -> str:
        raise KeyError("boom")


class TestBatchingOnTheEventLoop:
    async def test_a_burst_is_chained_after_the_delay_and_written_once(self):
        sink = Sink()
        log = AuditLog(sink, AuditSigner(Ed25519PrivateKey.generate()))
        await _until(lambda: sink.writes == 1)  # the open record
        for index in range(3):
            log.append({"type": "call", "n": index})
        assert log._pending, "the records were chained on the caller's path"
        await _until(lambda: len(sink.lines) == 4)
        assert [json.loads(line)["type"] for line in sink.lines] == ["open", "call", "call", "call"]
        assert sink.writes == 2, "one write per batch"
        log.close()

    def test_a_batch_left_on_a_loop_that_ended_is_chained_by_the_next_append_on_another(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key))

        async def append(n: int) -> None:
            log.append({"type": "call", "n": n})  # its batch is due on this loop, which then ends

        asyncio.run(append(1))
        asyncio.run(append(2))  # another loop: the stranded batch is chained now, with this record
        deadline = time.monotonic() + 5
        while len(records(tmp_path / "audit.jsonl")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [record.get("n") for record in records(tmp_path / "audit.jsonl")] == [None, 1, 2]
        log.close()
        assert verify_audit_log(tmp_path / "audit.jsonl", key.public_key()).ok

    async def test_a_slow_sink_holds_up_neither_append_nor_the_loop(self):
        sink = Sink()
        log = AuditLog(sink, AuditSigner(Ed25519PrivateKey.generate()))
        sink.gate.clear()  # every write now blocks
        for index in range(100):
            log.append({"type": "call", "n": index})
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # the batch is chained on the loop and waits at the writer
        assert not log._pending
        sink.gate.set()
        log.close()
        assert [json.loads(line).get("n") for line in sink.lines if '"call"' in line] == list(range(100))


class TestTheWriterNeverDiesOfARecord:
    def test_a_lone_surrogate_is_escaped_and_the_chain_verifies(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key))
        log.append({"type": "call", "args": {"x": "\ud800"}})  # json.loads accepts an escaped one
        log.append({"type": "call", "n": 2})
        log.close()
        written = records(tmp_path / "audit.jsonl")
        assert written[1]["args"] == {"x": "\ud800"} and written[2]["n"] == 2 and written[-1]["final"] is True
        assert verify_audit_log(tmp_path / "audit.jsonl", key.public_key()).ok

    def test_a_value_whose_str_raises_takes_its_slot_as_unwritable(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key))
        log.append({"type": "call", "args": {"x": Unprintable()}})
        log.append({"type": "call", "n": 2})
        log.close()
        assert [record["type"] for record in records(tmp_path / "audit.jsonl")] == [
            "open", "unwritable", "call", "checkpoint"]

    def test_a_record_builder_that_raises_takes_its_slot_as_unwritable(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key))
        log.append(lambda: {"type": "call", "n": 1 // 0})
        log.append(lambda: {"type": "call", "n": 2})
        log.close()
        written = records(tmp_path / "audit.jsonl")
        assert [(record["type"], record.get("error")) for record in written[1:3]] == [
            ("unwritable", "ZeroDivisionError"), ("call", None)]
        assert verify_audit_log(tmp_path / "audit.jsonl", key.public_key()).ok

    async def test_a_head_waiter_that_gave_up_does_not_stop_the_writer(self, tmp_path):
        key = Ed25519PrivateKey.generate()
        log = AuditLog(tmp_path / "audit.jsonl", AuditSigner(key))
        for _ in range(20):
            waiter = asyncio.ensure_future(log.signed_head())
            await asyncio.sleep(0)
            waiter.cancel()
        log.append({"type": "call", "n": 1})
        head = await log.signed_head()
        log.close()
        assert records(tmp_path / "audit.jsonl")[head["seq"]] == head["checkpoint"]
        assert verify_audit_log(tmp_path / "audit.jsonl", key.public_key()).ok


class FailingSigner(AuditSigner):
    """Signs until `fail` is set."""

    fail = False

    def sign(self, message: bytes) -> str:
        if self.fail:
            raise RuntimeError("signing backend hiccup")
        return super().sign(message)


class TestAFailedChainFailsClosed:
    async def test_a_checkpoint_that_cannot_be_signed_stops_the_log_and_keeps_what_came_before(self, tmp_path, caplog):
        key = Ed25519PrivateKey.generate()
        signer = FailingSigner(key)
        log = AuditLog(tmp_path / "audit.jsonl", signer, checkpoint_every=3)
        signer.fail = True
        for index in range(3):  # the third brings a checkpoint, whose signature fails
            log.append({"type": "call", "n": index})
        await _until(lambda: not log.has_room())
        with pytest.raises(AuditLogClosed, match="failed"):
            log.append({"type": "call", "n": 99})
        with pytest.raises(AuditLogClosed):
            await log.signed_head()
        log.close()
        log.close()  # returns, never hangs
        assert [record.get("n") for record in records(tmp_path / "audit.jsonl")] == [None, 0, 1, 2]
        assert "audit chaining failed (RuntimeError)" in caplog.text
        result = verify_audit_log(tmp_path / "audit.jsonl", key.public_key())
        # The chain is intact up to where it stopped, and the verifier says it stopped.
        assert not result.ok and "without a final signed checkpoint" in result.reason

    def test_a_final_checkpoint_that_cannot_be_signed_still_closes(self, tmp_path):
        signer = FailingSigner(Ed25519PrivateKey.generate())
        log = AuditLog(tmp_path / "audit.jsonl", signer)
        log.append({"type": "call", "n": 1})
        signer.fail = True
        log.close()
        assert [record["type"] for record in records(tmp_path / "audit.jsonl")] == ["open", "call"]


class TestAFailedWriterFailsClosed:
    async def test_after_a_write_failure_calls_are_refused_and_nothing_hangs(self, caplog):
        signer = AuditSigner(Ed25519PrivateKey.generate())
        sink = Sink(fail=True)
        log = AuditLog(sink, signer)
        log.append({"type": "call"})
        for _ in range(100):
            if not log.has_room():
                break
            await asyncio.sleep(0.01)
        assert not log.has_room(), "the backpressure gate must refuse calls once records cannot be kept"
        with pytest.raises(AuditLogClosed, match="failed"):
            log.append({"type": "call"})
        with pytest.raises(AuditLogClosed):
            await log.signed_head()
        log.close()
        assert "audit writer failed (OSError)" in caplog.text

    async def test_a_head_is_not_reused_before_its_line_is_written(self):
        sink = Sink()
        log = AuditLog(sink, AuditSigner(Ed25519PrivateKey.generate()))
        written = await log.signed_head()
        sink.gate.clear()  # the next write blocks
        log.append({"type": "call"})
        fresh = asyncio.ensure_future(log.signed_head())
        await asyncio.sleep(0.05)
        assert await log.signed_head(max_age_s=60) == written, "a head whose line is not written was handed out"
        sink.gate.set()
        assert (await fresh)["seq"] > written["seq"]
        log.close()
