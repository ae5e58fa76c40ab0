"""Ships the audit chain to the blob store: a bounded buffer, signed batches, retries, fail-closed backpressure.

Threat model: with stdio off in production, this is the only way audit leaves the TEE, so a record
must never be dropped. Lines wait in a buffer until a block holding them (sealed with the attested
audit key) has been appended. A failed append is retried with capped exponential backoff, forever;
while the buffer holds `capacity` lines or more, `has_room()` is False and the server refuses new
tool calls (fail closed) until the store takes them again. Calls already admitted still append their
records, so the bound is a refusal threshold and memory stays bounded by it plus in-flight calls.
Records still buffered when the process dies are lost with it; the next writer then continues from
the last stored record without a final checkpoint before it, which `audit verify` reports.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from itertools import islice

from app.audit.batch_seal import is_seal, sealed_block
from app.audit.blob_store import (MAX_BLOCK_BYTES, MAX_BLOCKS_PER_BLOB, AuditBlobStore, AuditStoreError, BlobState,
                                  blob_name)
from app.audit.signing import AuditSigner
from app.audit.recovery import GENESIS, line_hash

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 10_000
MAX_BATCH_RECORDS = 500
# Room left in a block for the seal line.
MAX_BATCH_BYTES = MAX_BLOCK_BYTES - 4096
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 5.0
DEFAULT_CLOSE_TIMEOUT_S = 10.0


class BlobAuditSink:
    """An `AuditSink` for `AuditLog` that appends sealed blocks to append blobs.

    Args:
        store: The blob store (one prefix = one chain).
        signer: The audit signer (attestation-derived in TEE mode); seals every block.
        capacity: Buffered lines at which new calls are refused.
        close_timeout_s: How long `close()` keeps trying to ship what is left.
        retry_max_s: The longest pause between two attempts.

    Example:
        >>> sink = BlobAuditSink(AuditBlobStore(url, "audit", "mcp-tee", credential), signer)
        >>> log = AuditLog(sink, signer)  # reads the chain head from the store
    """

    def __init__(self, store: AuditBlobStore, signer: AuditSigner, *, capacity: int = DEFAULT_CAPACITY,
                 close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self._store = store
        self._signer = signer
        self._capacity = capacity
        self._close_timeout_s = close_timeout_s
        self._retry_max_s = retry_max_s
        self._pending: deque[str] = deque()
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._blob: BlobState | None = None
        self._offset = 0
        self._blocks = 0
        self.failures = 0
        self._uploader = threading.Thread(target=self._run, name="audit-shipper", daemon=True)

    def chain_head(self) -> tuple[int, str]:
        """Read where the stored chain ends and start shipping (raises `AuditStoreError` when unreachable)."""
        head = (0, GENESIS)
        # Newest first; an empty newest blob is one whose writer died before its first append.
        for name in reversed(self._store.names()):
            state = self._store.state(name)
            if state.size == 0:
                continue
            lines = [line for line in self._store.tail(state).split(b"\n") if line.strip() and not is_seal(line)]
            try:
                head = (int(json.loads(lines[-1])["seq"]) + 1, line_hash(lines[-1]))
            except (IndexError, ValueError, KeyError, TypeError):
                # Fail closed: never start a fresh chain on top of a damaged one.
                raise AuditStoreError(f"audit store: {name} does not end with a valid record") from None
            break
        self._uploader.start()
        return head

    def write_lines(self, lines: list[str]) -> None:
        with self._cond:
            self._pending.extend(lines)
            self._cond.notify()

    def has_room(self) -> bool:
        return len(self._pending) < self._capacity

    @property
    def pending(self) -> int:
        """Lines not yet stored."""
        return len(self._pending)

    def close(self) -> None:
        """Stop taking lines, ship what is buffered within `close_timeout_s`, then stop the uploader."""
        self._closing.set()
        with self._cond:
            self._cond.notify()
        if self._uploader.is_alive():
            self._uploader.join(self._close_timeout_s + self._retry_max_s)
        if self._pending:
            logger.error("audit store unreachable at shutdown: %d audit lines were not shipped", len(self._pending))
        self._store.close()

    def _next_batch(self) -> list[str] | None:
        with self._cond:
            while not self._pending and not self._closing.is_set():
                self._cond.wait()
            if not self._pending:
                return None
            batch, size = [], 0
            for line in islice(self._pending, MAX_BATCH_RECORDS):
                size += len(line.encode()) + 1
                if batch and size > MAX_BATCH_BYTES:
                    break
                batch.append(line)
            return batch

    def _run(self) -> None:
        delay = RETRY_INITIAL_S
        deadline: float | None = None
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._ship(batch)
            except AuditStoreError as exc:
                self.failures += 1
                logger.warning("%s; %d audit lines buffered, retrying", exc, len(self._pending))
                if self._closing.is_set():
                    deadline = deadline or time.monotonic() + self._close_timeout_s
                    if time.monotonic() >= deadline:
                        return
                time.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            delay = RETRY_INITIAL_S
            with self._cond:
                for _ in batch:
                    self._pending.popleft()

    def _ship(self, batch: list[str]) -> None:
        if self._blob is None or self._blocks >= MAX_BLOCKS_PER_BLOB:
            first_seq = int(json.loads(batch[0])["seq"])
            self._blob = self._store.create(blob_name(self._store.prefix, first_seq))
            self._offset, self._blocks = self._blob.size, self._blob.blocks
        block = sealed_block(self._blob.name, batch, self._signer)
        self._store.append(self._blob.name, self._offset, block)
        self._offset += len(block)
        self._blocks += 1

