"""Where an audit file's chain resumes: the last valid record's seq and hash, cutting a torn last line.

A writer that dies mid-write leaves a torn last line (or, from an older writer, one longer than
`MAX_RECORD_BYTES`). Start-up cuts the file back to the last valid record and reports what it cut,
so the new run's `open` record can chain and sign the cut. Only the last line is ever cut: if the
record before it is not valid either, the log is damaged, not torn, and start-up refuses (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

GENESIS = "0" * 64
# No record the writer makes comes near this (fields are clipped); a longer last line is torn.
MAX_RECORD_BYTES = 1_048_576
_SCAN_CHUNK = 65_536


def line_hash(line: bytes) -> str:
    """The chain hash of one line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


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


def chain_head(path: Path) -> tuple[int, str, dict[str, Any] | None]:
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
