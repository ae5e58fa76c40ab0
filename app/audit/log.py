"""The tamper-evident audit log: a SHA-256 hash chain of JSON lines with signed Ed25519 checkpoints.

Threat model: whoever can write the log file (an operator, a compromised log shipper) may try to
edit, delete, reorder or cut off records. Each line carries `seq` and `prev` (the SHA-256 of the
previous line's bytes), so any change breaks the chain at the next line. Every `checkpoint_every`
records, and at shutdown, a checkpoint line signs `(seq, prev)` with a key only this process holds
(in TEE mode, attestation-released material), so nobody can rebuild a consistent chain after an
edit. The shutdown checkpoint is marked `final`; a log that does not end with one was truncated or
its writer crashed. On the event loop, `append` only stamps the time and keeps the record; one loop
callback 2 ms later chains, serialises and signs the batch in append order, after the response that
caused it, and a writer thread does the I/O, so a slow disk never holds up a call. (The chaining
used to run on the writer thread too; taking the interpreter lock in the middle of the next
request cost more than the chaining itself.) `close()` drains and fsyncs everything.

A writer that died mid-write leaves a torn last line; start-up cuts it (`app.audit.recovery`) and
says so in the new run's `open` record (`recovered`: bytes cut, their SHA-256, the last kept
`seq`), so the cut is itself chained and signed and `audit verify` reports it. A record this
writer cannot serialise takes its slot as `unwritable`; a write that fails (full disk, broken
store) stops the log, and from then on `has_room()` is False, so calls are refused, not unaudited.

The chain alone cannot show that a log was cut back to an earlier run's final checkpoint: what is
left is intact and ends signed, and in TEE mode every run signs with the same key. So `signed_head`
returns a signed checkpoint, written on demand unless one is recent enough (`attestation_status`
reports one at most a second old); an auditor who keeps the latest such head outside the host can
later demand it with `audit verify --expect-head`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from app.audit.recovery import GENESIS, chain_head, line_hash
from app.audit.signing import AuditSigner, checkpoint_message

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_EVERY = 100
STDOUT_SINK = "-"
# On an event loop a batch is chained this long after its first record: after the response that
# caused it, and once for a burst.
WRITE_DELAY_S = 0.002
# How long `signed_head` waits for the writer before it gives up.
HEAD_TIMEOUT_S = 5.0
# What a pending entry is: a record, a signed checkpoint (its payload a head waiter or None), the final one.
_RECORD, _CHECKPOINT, _FINAL = object(), object(), object()


class AuditLogClosed(RuntimeError):
    """The log takes no more records: it wrote its final checkpoint, or its writer failed."""


class AuditSink(Protocol):
    """Where chained lines go instead of a file: it resumes the chain, takes lines, says when it is full."""

    def chain_head(self) -> tuple[int, str]:
        """Next `seq` and `prev`, so a new process continues the stored chain."""
        ...

    def write_lines(self, lines: list[str]) -> None:
        """Take lines in chain order; never drops one."""
        ...

    def has_room(self) -> bool:
        """False while the sink's bounded buffer is full (new calls must then be refused)."""
        ...

    @property
    def pending(self) -> int:
        """Lines taken but not yet stored."""
        ...

    def close(self) -> None:
        """Ship what is buffered, within the sink's own deadline."""
        ...


class AuditLog:
    """Appends chained, periodically signed JSON lines to a file or stdout.

    On an event loop, `append` only stamps the time and keeps the record; one loop callback
    `WRITE_DELAY_S` later chains the batch (seq, prev, signatures) in append order and hands its
    lines to the writer thread, which alone does the I/O. Without a running loop a record is
    chained at once. Either way the caller never waits for the disk.

    Args:
        sink: A file path, `-` for stdout (container logs), or an `AuditSink` (for example the blob store).
        signer: Signs checkpoints.
        checkpoint_every: Records between signed checkpoints.

    Example:
        >>> log = AuditLog("audit.jsonl", AuditSigner(Ed25519PrivateKey.generate()))
        >>> log.append({"type": "call", "tool": "query_database"})
        >>> log.close()  # writes the final checkpoint and flushes everything
    """

    def __init__(self, sink: str | Path | AuditSink, signer: AuditSigner,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._lock = threading.Lock()  # guards the pending batch and the chain state (`_seq`, `_prev`)
        self._pending: list[tuple[object, float, Any]] = []  # (kind, time, a record, its builder or a head waiter)
        self._batch_loop: asyncio.AbstractEventLoop | None = None  # the loop the pending batch is chained on
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._closed = False
        self._since_checkpoint = 0
        self._formatted_second: tuple[int, str] = (-1, "")
        self._latest_head: tuple[float, dict[str, Any]] | None = None  # (monotonic time, head), set once written
        self._failed: BaseException | None = None  # set by the writer when a write fails; the log then refuses
        self._sink: AuditSink | None = None
        if not isinstance(sink, (str, Path)):
            self._sink = sink
            self._seq, self._prev = sink.chain_head()
            recovered = None
        elif str(sink) == STDOUT_SINK:
            self._stream: TextIO = sys.stdout
            self._owns_stream = False
            self._seq, self._prev = 0, GENESIS
            recovered = None
        else:
            path = Path(sink)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._seq, self._prev, recovered = chain_head(path)
            self._stream = path.open("a", encoding="utf-8")
            self._owns_stream = True
        self._before_close: list[Callable[[], None]] = []
        opening: dict[str, Any] = {"type": "open", "key": signer.public_key_b64()}
        if recovered is not None:
            opening["recovered"] = recovered
        self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
        self._writer.start()
        with self._lock:
            self._pending.append((_RECORD, time.time(), opening))
            self._chain_pending()

    async def signed_head(self, max_age_s: float = 0.0) -> dict[str, Any]:
        """A signed checkpoint an auditor can keep: seq, line hash, record; fresh unless one is `max_age_s` old.

        A new checkpoint is returned only once its line is written.

        Example:
            >>> head = await log.signed_head()
            >>> f"{head['seq']}:{head['sha256']}"  # what `audit verify --expect-head` takes
        """
        written: Future[dict[str, Any]] = Future()
        with self._lock:
            self._check_open()
            latest = self._latest_head
            if latest is not None and time.monotonic() - latest[0] <= max_age_s:
                return latest[1]
            self._pending.append((_CHECKPOINT, time.time(), written))
            self._chain_pending()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(written), HEAD_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RuntimeError("the audit writer did not write a checkpoint in time") from None

    def before_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` (which may still `append`) when `close()` starts, before the final checkpoint."""
        self._before_close.append(callback)

    def append(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Keep one record for the next batch; returns at once.

        The record must not change afterwards. It may be a function that builds it, called once
        when the batch is chained, so building it (redaction, clipping) also falls after the response;
        it runs with the log's lock held, so it must not call back into the log.
        """
        with self._lock:
            self._check_open()
            stamp = time.time()
            self._pending.append((_RECORD, stamp, record))
            self._since_checkpoint += 1
            if self._since_checkpoint >= self._checkpoint_every:
                self._since_checkpoint = 0
                self._pending.append((_CHECKPOINT, stamp, None))
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is None or self._batch_loop not in (None, loop):
                # No loop to batch on, or the batch waits on another loop (which may never run again).
                self._chain_pending()
            elif self._batch_loop is None:
                self._batch_loop = loop
                loop.call_later(WRITE_DELAY_S, self._chain_batch)

    def has_room(self) -> bool:
        """False once the writer failed, or while a shipping sink's buffer is full; otherwise True."""
        return self._failed is None and (self._sink is None or self._sink.has_room())

    def buffered(self) -> int:
        """Lines a shipping sink still holds (0 for files and stdout)."""
        return 0 if self._sink is None else self._sink.pending

    def close(self) -> None:
        """Write the final checkpoint, drain the writer, flush and fsync. Safe to call twice."""
        callbacks, self._before_close = self._before_close, []
        for callback in callbacks:
            if self._failed is None:
                callback()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.append((_FINAL, time.time(), None))
            try:
                self._chain_pending()
            finally:
                self._writes.put(None)
        self._writer.join()
        if self._sink is not None:
            self._sink.close()
            return
        if self._failed is not None:
            logger.error("audit log closed without its final checkpoint: it failed (%s)",
                         type(self._failed).__name__)
            if self._owns_stream:
                self._stream.close()
            return
        self._stream.flush()
        if self._owns_stream:
            os.fsync(self._stream.fileno())
            self._stream.close()

    def _check_open(self) -> None:
        """Raise `AuditLogClosed` once nothing more can join the chain (call with the lock held)."""
        if self._closed:
            raise AuditLogClosed("audit log is closed")
        if self._failed is not None:
            raise AuditLogClosed(f"the audit log failed ({type(self._failed).__name__}); nothing more is recorded")

    def _chain_batch(self) -> None:
        with self._lock:
            self._chain_pending()

    def _chain_pending(self) -> None:
        """Chain every pending entry in order and hand the lines to the writer (call with the lock held)."""
        batch, self._pending, self._batch_loop = self._pending, [], None
        if self._failed is not None:  # the writer failed meanwhile: a head request is told, not left waiting
            for _, _, payload in batch:
                if isinstance(payload, Future):
                    _settle(payload, error=AuditLogClosed("the audit log failed"))
            return
        if not batch:
            return
        write = _Write()
        try:
            for kind, stamp, payload in batch:
                if kind is _RECORD:
                    write.lines.append(self._chain(payload, stamp)[0])
                    continue
                line, checkpoint = self._chain({"type": "checkpoint", "final": kind is _FINAL}, stamp, signed=True)
                write.lines.append(line)
                write.head = {"seq": checkpoint["seq"], "sha256": self._prev, "checkpoint": checkpoint}
                if isinstance(payload, Future):
                    write.waiters.append(payload)
        except BaseException as exc:  # noqa: BLE001 - a checkpoint that cannot be signed: stop, fail closed
            # The lines chained so far are consistent and still written; nothing joins the chain after them.
            write.fails_with = exc
            self._failed = exc
            logger.error("audit chaining failed (%s): records can no longer be kept, so calls are refused",
                         type(exc).__name__)
            write.waiters.extend(payload for _, _, payload in batch if isinstance(payload, Future))
        self._writes.put(write)

    def _iso_time(self, stamp: float) -> str:
        """`2026-11-29T21:59:42.606+00:00`; the seconds part is formatted once per second, not per record."""
        second = int(stamp)
        if second != self._formatted_second[0]:
            self._formatted_second = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{self._formatted_second[1]}.{int((stamp - second) * 1000):03d}+00:00"

    def _chain(self, record: dict[str, Any] | Callable[[], dict[str, Any]], stamp: float, *,
               signed: bool = False) -> tuple[str, dict[str, Any]]:
        try:
            stamped = {"seq": self._seq, "prev": self._prev, "time": self._iso_time(stamp),
                       **(record() if callable(record) else record)}
            if signed:
                stamped["sig"] = self._signer.sign(checkpoint_message(stamped))
            line, data = _serialise(stamped)
        except Exception as exc:  # noqa: BLE001 - any value a caller recorded must not stop the log
            if signed:
                raise
            # Never lose the slot silently: chain a record saying this one could not be written.
            return self._chain({"type": "unwritable", "error": type(exc).__name__}, stamp)
        self._prev = line_hash(data)
        self._seq += 1
        return line, stamped

    # Below here runs on the writer thread only: it alone touches the stream or the sink.

    def _drain(self) -> None:
        broken = False  # a write failed: nothing after it is written
        while True:
            writes = [self._writes.get()]
            while not self._writes.empty():  # one write covers whatever queued up meanwhile
                writes.append(self._writes.get())
            batch = [write for write in writes if write is not None]
            if not broken and batch:
                try:
                    self._write(batch)
                except Exception as exc:  # noqa: BLE001 - a full disk or a broken store: refuse, never drop unseen
                    broken = True
                    self._failed = self._failed or exc
                    logger.error("audit writer failed (%s): records can no longer be kept, so calls are refused",
                                 type(exc).__name__)
            for write in batch:
                if broken or write.fails_with is not None:
                    for waiter in write.waiters:
                        _settle(waiter, error=AuditLogClosed("the audit log failed"))
            if len(batch) < len(writes):
                return

    def _write(self, batch: list[_Write]) -> None:
        """Write the lines; a new head is published (and handed out) only once it is written."""
        lines = [line for write in batch for line in write.lines]
        if self._sink is not None:
            self._sink.write_lines(lines)
        else:
            self._stream.write("".join(f"{line}\n" for line in lines))
            self._stream.flush()
        for write in batch:
            if write.fails_with is not None:
                continue  # its waiters are told the log failed
            if write.head is not None:
                self._latest_head = (time.monotonic(), write.head)
            for waiter in write.waiters:
                _settle(waiter, result=write.head)


@dataclass
class _Write:
    """One chained batch on its way to the writer: its lines, its last checkpoint, who waits for it."""

    lines: list[str] = field(default_factory=list)
    head: dict[str, Any] | None = None
    waiters: list[Future[dict[str, Any]]] = field(default_factory=list)
    fails_with: BaseException | None = None  # chaining stopped here: the lines before are written, then the log stops


def _serialise(stamped: dict[str, Any]) -> tuple[str, bytes]:
    """The record's line and its UTF-8 bytes; a lone surrogate from a client is escaped, not fatal."""
    line = json.dumps(stamped, separators=(",", ":"), ensure_ascii=False, default=str)
    try:
        return line, line.encode()
    except UnicodeEncodeError:
        line = json.dumps(stamped, separators=(",", ":"), ensure_ascii=True, default=str)
        return line, line.encode()


def _settle(waiter: Future[dict[str, Any]], *, result: dict[str, Any] | None = None,
            error: BaseException | None = None) -> None:
    """Answer a head request; one its caller already gave up on (cancelled, timed out) is left alone."""
    try:
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)
    except InvalidStateError:
        pass
