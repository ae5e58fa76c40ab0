"""Verify an audit log's hash chain and signed checkpoints; name the first bad record.

What counts as bad, checked in file order: a line that is not a JSON object; a `seq` that does not
follow the previous one (deletion, reordering, insertion); a `prev` that is not the SHA-256 of the
previous line (the previous line was edited); a checkpoint whose Ed25519 signature does not verify
under any trusted key (a forged or re-chained stretch); and a log that does not end with a `final`
checkpoint (truncation, or a writer that never shut down cleanly: the two look the same, and both
leave records no signature covers). A new process that continues a file whose previous writer
crashed is reported as a warning, since the chain still proves nothing in between was removed; so
is a torn last line that the new process cut off at start-up (its `open` record names the bytes).

Live mode (`live=True`) is for the log of a server that is still running: the records after its
last signed checkpoint are reported as `pending` (no signature covers them yet) instead of as a
missing final checkpoint. Everything up to that checkpoint is verified exactly as above.

What the file cannot show by itself is that it was cut back to an earlier run's final checkpoint:
the rest is intact and ends signed. An auditor who kept a later signed head outside the host (the
`audit_head` that `attestation_status` returns: a checkpoint's `seq` and line SHA-256) passes it as
`expect_head`; a log that ends before it was truncated, and one whose record at that `seq` hashes
differently was rewritten.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.audit.signing import checkpoint_message
from app.audit.recovery import GENESIS, line_hash


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on one audit log.

    Args:
        ok: True when every record is intact and covered by a final checkpoint.
        records: Lines read.
        bad_line: 1-based line number of the first bad record (None when ok).
        reason: What is wrong with it.
        warnings: Problems that do not break the chain (for example an unclean restart).
        pending: Live mode only: records after the last signed checkpoint, not yet covered by a signature.
    """

    ok: bool
    records: int
    bad_line: int | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    pending: int = 0


class _Bad(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def load_public_key(value: str) -> Ed25519PublicKey:
    """A key from a file path or literal: PEM, or base64 of the raw 32 bytes."""
    path = Path(value)
    text = path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("public key is not an Ed25519 key")
        return key
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("public key is neither PEM nor base64 of 32 raw Ed25519 bytes") from None


def signed_by_any(signature_b64: object, message: bytes, keys: Sequence[Ed25519PublicKey]) -> bool:
    """True when `signature_b64` (standard base64) is a valid Ed25519 signature of `message` by one of `keys`."""
    try:
        signature = base64.b64decode(str(signature_b64), validate=True)
    except binascii.Error:
        return False
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


@dataclass(frozen=True)
class ExpectedHead:
    """A signed head the auditor kept outside the host: a checkpoint's `seq` and its line's SHA-256."""

    seq: int
    sha256: str

    @classmethod
    def parse(cls, text: str) -> "ExpectedHead":
        """From `SEQ:SHA256`, as `attestation_status` reports it; raises ValueError otherwise."""
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("--expect-head takes SEQ:SHA256 (a checkpoint's seq and its 64 hex digit line hash)")
        return cls(int(seq), digest)


def _signed_by(record: dict[str, Any], keys: list[Ed25519PublicKey]) -> bool:
    unsigned = {name: value for name, value in record.items() if name != "sig"}
    return signed_by_any(record.get("sig", ""), checkpoint_message(unsigned), keys)


def _walk(lines: list[bytes], keys: list[Ed25519PublicKey], warnings: list[str], live: bool = False,
          expect_head: ExpectedHead | None = None) -> int:
    """Raise _Bad at the first bad record; return how many records follow the last checkpoint (live mode)."""
    prev_hash, prev_record, last_checkpoint = GENESIS, None, 0
    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
        except ValueError:
            raise _Bad(number, "not a JSON record") from None
        if not isinstance(record, dict):
            raise _Bad(number, "not a JSON object")
        expected_seq = 0 if prev_record is None else prev_record.get("seq", -2) + 1
        if record.get("seq") != expected_seq:
            raise _Bad(number, f"seq {record.get('seq')!r} where {expected_seq} was expected "
                               "(a record was deleted, inserted or reordered)")
        if record.get("prev") != prev_hash:
            if prev_record is None:
                raise _Bad(number, "first record does not start the chain")
            raise _Bad(number - 1, f"record seq {prev_record['seq']} was altered "
                                   "(its hash does not match the next record's prev)")
        if record.get("type") == "checkpoint" and not _signed_by(record, keys):
            raise _Bad(number, f"checkpoint seq {record['seq']} has no valid signature from a trusted key "
                               "(records since the previous checkpoint were altered)")
        if record.get("type") == "checkpoint":
            last_checkpoint = number
        if record.get("type") == "open" and prev_record is not None and not _is_final(prev_record):
            warnings.append(f"line {number}: the writer before seq {record['seq']} did not shut down cleanly")
        if record.get("type") == "open" and isinstance(record.get("recovered"), dict):
            cut = record["recovered"]
            warnings.append(f"line {number}: start-up cut a torn last line of {cut.get('cut_bytes')} bytes "
                            f"(sha256 {cut.get('cut_sha256')}) after seq {cut.get('last_kept_seq')}")
        prev_hash, prev_record = line_hash(raw), record
        if expect_head is not None and record["seq"] == expect_head.seq and prev_hash != expect_head.sha256:
            raise _Bad(number, f"record seq {expect_head.seq} is not the expected head (the log was rewritten)")
    if prev_record is None:
        raise _Bad(1, "empty audit log")
    if expect_head is not None and prev_record["seq"] < expect_head.seq:
        raise _Bad(len(lines), f"log ends at seq {prev_record['seq']}, before the expected head seq "
                               f"{expect_head.seq} (truncated)")
    if live:
        return len(lines) - last_checkpoint
    if not _is_final(prev_record):
        raise _Bad(len(lines), f"log ends at seq {prev_record.get('seq')} without a final signed checkpoint "
                               "(truncated, or the writer did not shut down cleanly; for a running "
                               "server's log use live mode)")
    return 0


def _is_final(record: dict[str, Any]) -> bool:
    return record.get("type") == "checkpoint" and record.get("final") is True


def verify_audit_log(path: str | Path, public_keys: Ed25519PublicKey | Iterable[Ed25519PublicKey], *,
                     live: bool = False, expect_head: ExpectedHead | None = None) -> VerifyResult:
    """Check a whole audit log (and that it reaches `expect_head`); raises only for an unreadable file.

    Example:
        >>> result = verify_audit_log("audit.jsonl", load_public_key(b64))
        >>> result.ok, result.bad_line, result.reason
    """
    lines = Path(path).read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return verify_audit_lines(lines, public_keys, live=live, expect_head=expect_head)


def verify_audit_lines(lines: list[bytes], public_keys: Ed25519PublicKey | Iterable[Ed25519PublicKey], *,
                       live: bool = False, expect_head: ExpectedHead | None = None) -> VerifyResult:
    """Check a chain given as its lines (without newlines), wherever they were stored."""
    keys = [public_keys] if isinstance(public_keys, Ed25519PublicKey) else list(public_keys)
    warnings: list[str] = []
    try:
        pending = _walk(lines, keys, warnings, live, expect_head)
    except _Bad as bad:
        return VerifyResult(ok=False, records=len(lines), bad_line=bad.line, reason=bad.reason, warnings=warnings)
    return VerifyResult(ok=True, records=len(lines), warnings=warnings, pending=pending)
