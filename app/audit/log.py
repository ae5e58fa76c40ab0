"""The tamper-evident audit log: a SHA-256 hash chain of JSON lines with signed Ed25519 checkpoints.

Threat model: whoever can write the log file (an operator, a compromised log shipper) may try to
edit, delete, reorder or cut off records. Each line carries `seq` and `prev` (the SHA-256 of the
previous line's bytes), so any change breaks the chain at the next line. Every `checkpoint_every`
records, and at shutdown, a checkpoint line signs `(seq, prev)` with a key only this process holds
(in TEE mode, attestation-released material), so nobody can rebuild a consistent chain after an
edit. The shutdown checkpoint is marked `final`; a log that does not end with one was truncated or
its writer crashed. The caller's thread only stamps the time and enqueues a record; one background
thread chains, serialises, signs and writes, in append order, so neither the hashing nor a slow
disk is on a tool call's path; `close()` drains and fsyncs everything.

A writer that dies mid-write leaves a torn last line (or, from an older writer, one longer than
`MAX_RECORD_BYTES`). Start-up then cuts the file back to the last valid record and says so in the
new run's `open` record (`recovered`: bytes cut, their SHA-256, the last kept `seq`), so the cut
is itself chained and signed and `audit verify` reports it. Only the last line is ever cut: if the
record before it is not valid either, the log is damaged, not torn, and start-up still refuses.

The chain alone cannot show that a log was cut back to an earlier run's final checkpoint: what is
left is intact and ends signed, and in TEE mode every run signs with the same key. So `signed_head`
returns a signed checkpoint, written on demand unless one is recent enough (`attestation_status`
reports one at most a second old); an auditor who keeps the latest such head outside the host can
later demand it with `audit verify --expect-head`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Protocol, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

GENESIS = "0" * 64
# No record this writer makes comes near this (fields are clipped); a longer last line is torn.
MAX_RECORD_BYTES = 1_048_576
_SCAN_CHUNK = 65_536
DEFAULT_CHECKPOINT_EVERY = 100
STDOUT_SINK = "-"
# After the first record of a burst the writer waits this long, so one write covers the burst; short,
# because while the writer holds the interpreter lock a request waits.
WRITE_DELAY_S = 0.002
# How long `signed_head` waits for the writer before it gives up.
HEAD_TIMEOUT_S = 5.0
# What the writer thread is asked to do, in queue order.
_RECORD, _CHECKPOINT, _HEAD, _STOP = object(), object(), object(), object()


def line_hash(line: bytes) -> str:
    """The chain hash of one line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


def checkpoint_message(unsigned: dict[str, Any]) -> bytes:
    """The exact bytes a checkpoint signs: every field but `sig`, canonically serialised."""
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"mcp-tee-audit-checkpoint\n" + canonical.encode()


def public_key_b64(key: Ed25519PublicKey) -> str:
    """Standard base64 of the raw 32-byte public key (what `audit verify --public-key` takes)."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class AuditLogClosed(RuntimeError):
    """The log has written its final checkpoint; nothing more can join the chain."""


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


class AuditSigner:
    """Signs checkpoints.

    Args:
        private_key: A per-process key outside a TEE, or the attestation-derived key inside one.

    Example:
        >>> signer = AuditSigner(Ed25519PrivateKey.generate())
        >>> signer.public_key_b64()  # publish in attestation_status
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public_key_b64 = public_key_b64(private_key.public_key())

    def sign(self, message: bytes) -> str:
        """Standard base64 Ed25519 signature of `message`."""
        return base64.b64encode(self._key.sign(message)).decode()

    def public_key_b64(self) -> str:
        """The public half, for `attestation_status` and the verifier."""
        return self._public_key_b64


def _last_line_start(handle: BinaryIO, end: int) -> int:
    """Offset where the line ending at `end` begins (scans backwards in chunks; reads no more)."""
    position = end
    while position > 0:
        step = min(_SCAN_CHUNK, position)
        handle.seek(position - step)
        newline = handle.read(step).rfind(b"\n")
        if newline >= 0:
            return position - step + newline + 1
        position -= step
    return 0


def _valid_record(line: bytes) -> int | None:
    """The record's `seq` when `line` is one whole audit record, else None."""
    if len(line) > MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(line)
        seq = record["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _cut_from(handle: BinaryIO, start: int, end: int) -> dict[str, Any]:
    """Truncate the file at `start`; return the size and SHA-256 of what was cut (hashed in chunks)."""
    digest = hashlib.sha256()
    handle.seek(start)
    while chunk := handle.read(_SCAN_CHUNK):
        digest.update(chunk)
    handle.truncate(start)
    return {"cut_bytes": end - start, "cut_sha256": digest.hexdigest()}


def _chain_head(path: Path) -> tuple[int, str, dict[str, Any] | None]:
    """Next `seq` and `prev` for a log file, so a new process continues an existing chain.

    A torn or over-long last line is cut off; the third value then says what was cut.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS, None
    recovered = None
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(size - 1)
        end = size - 1 if handle.read(1) == b"\n" else size
        start = _last_line_start(handle, end)
        handle.seek(start)
        last = handle.read(min(end - start, MAX_RECORD_BYTES + 1))
        if end == size or _valid_record(last) is None:
            recovered = _cut_from(handle, start, size)
            end = start - 1
            if end < 0:
                # Fail closed: nothing valid is left to chain onto.
                raise ValueError(f"audit log {path} holds no valid record; move it aside")
            start = _last_line_start(handle, end)
            handle.seek(start)
            last = handle.read(min(end - start, MAX_RECORD_BYTES + 1))
        seq = _valid_record(last)
    if seq is None:
        # Fail closed: never silently start a fresh chain on top of a damaged one.
        raise ValueError(f"audit log {path} does not end with a valid record; move it aside")
    if recovered is not None:
        recovered["last_kept_seq"] = seq
    return seq + 1, line_hash(last), recovered


class AuditLog:
    """Appends chained, periodically signed JSON lines to a file or stdout.

    The caller's thread only stamps the time and enqueues; one writer thread chains, serialises,
    hashes, signs and writes, in the order the records were appended.

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
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[object, float, Any]] = queue.SimpleQueue()
        self._closed = False
        self._since_checkpoint = 0
        self._latest_head: tuple[float, dict[str, Any]] | None = None  # (monotonic time, head), set by the writer
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
            self._seq, self._prev, recovered = _chain_head(path)
            self._stream = path.open("a", encoding="utf-8")
            self._owns_stream = True
        self._before_close: list[Callable[[], None]] = []
        opening: dict[str, Any] = {"type": "open", "key": signer.public_key_b64()}
        if recovered is not None:
            opening["recovered"] = recovered
        self._queue.put((_RECORD, time.time(), opening))
        self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
        self._writer.start()

    async def signed_head(self, max_age_s: float = 0.0) -> dict[str, Any]:
        """A signed checkpoint an auditor can keep: seq, line hash, record; fresh unless one is `max_age_s` old.

        A new checkpoint is returned only once its line is written.

        Example:
            >>> head = await log.signed_head()
            >>> f"{head['seq']}:{head['sha256']}"  # what `audit verify --expect-head` takes
        """
        latest = self._latest_head
        if latest is not None and time.monotonic() - latest[0] <= max_age_s:
            return latest[1]
        written: Future[dict[str, Any]] = Future()
        with self._lock:
            if self._closed:
                raise AuditLogClosed("audit log is closed")
            self._queue.put((_HEAD, time.time(), written))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(written), HEAD_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RuntimeError("the audit writer did not write a checkpoint in time") from None

    def before_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` (which may still `append`) when `close()` starts, before the final checkpoint."""
        self._before_close.append(callback)

    def append(self, record: dict[str, Any]) -> None:
        """Enqueue one record for the writer; returns at once. The record must not change afterwards."""
        with self._lock:
            if self._closed:
                raise AuditLogClosed("audit log is closed")
            stamp = time.time()
            self._queue.put((_RECORD, stamp, record))
            self._since_checkpoint += 1
            if self._since_checkpoint >= self._checkpoint_every:
                self._since_checkpoint = 0
                self._queue.put((_CHECKPOINT, stamp, False))

    def has_room(self) -> bool:
        """False while a shipping sink's buffer is full; files and stdout always have room."""
        return self._sink is None or self._sink.has_room()

    def buffered(self) -> int:
        """Lines a shipping sink still holds (0 for files and stdout)."""
        return 0 if self._sink is None else self._sink.pending

    def close(self) -> None:
        """Write the final checkpoint, drain the queue, flush and fsync. Safe to call twice."""
        callbacks, self._before_close = self._before_close, []
        for callback in callbacks:
            callback()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put((_CHECKPOINT, time.time(), True))
            self._queue.put((_STOP, 0.0, None))
        self._writer.join()
        if self._sink is not None:
            self._sink.close()
            return
        self._stream.flush()
        if self._owns_stream:
            os.fsync(self._stream.fileno())
            self._stream.close()

    # Below here runs on the writer thread only: it alone touches `_seq` and `_prev`.

    def _chain(self, record: dict[str, Any], stamp: float, *, signed: bool = False) -> tuple[str, dict[str, Any]]:
        when = datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds")
        stamped = {"seq": self._seq, "prev": self._prev, "time": when, **record}
        if signed:
            stamped["sig"] = self._signer.sign(checkpoint_message(stamped))
        try:
            line = json.dumps(stamped, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError) as exc:
            # Never lose the slot silently: chain a record saying this one could not be written.
            return self._chain({"type": "unwritable", "error": type(exc).__name__}, stamp)
        self._prev = line_hash(line.encode())
        self._seq += 1
        return line, stamped

    def _drain(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0][0] is _RECORD:
                time.sleep(WRITE_DELAY_S)
            # Take whatever else is waiting, so one write covers a burst.
            while not self._queue.empty():
                batch.append(self._queue.get())
            lines: list[str] = []
            heads: list[tuple[Future[dict[str, Any]], dict[str, Any]]] = []
            stop = False
            for kind, stamp, payload in batch:
                if kind is _STOP:
                    stop = True
                elif kind is _RECORD:
                    lines.append(self._chain(payload, stamp)[0])
                else:
                    final = kind is _CHECKPOINT and payload
                    line, record = self._chain({"type": "checkpoint", "final": final}, stamp, signed=True)
                    lines.append(line)
                    head = {"seq": record["seq"], "sha256": self._prev, "checkpoint": record}
                    self._latest_head = (time.monotonic(), head)
                    if kind is _HEAD:
                        heads.append((payload, head))
            if lines and self._sink is not None:
                self._sink.write_lines(lines)
            elif lines:
                self._stream.write("".join(f"{line}\n" for line in lines))
                self._stream.flush()
            for written, head in heads:
                if not written.done():
                    written.set_result(head)
            if stop:
                return
