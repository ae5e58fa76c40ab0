"""Signed batch seals: each block appended to the audit store ends with a seal over its lines.

Threat model: the store lies outside the TEE. A seal binds the blob it was written to, the first and
last `seq` of the block, the line count and the SHA-256 of the exact bytes, under the attested audit
key (the key that signs checkpoints). So every shipped record is signed the moment it lands, not
only at the next checkpoint, and a block copied into another blob, edited, cut short or left
unsealed is named by the verifier. Seal lines carry no `seq`: they sit beside the chain, not in it,
so the chain verifies exactly as a file-based log does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit.signing import AuditSigner
from app.audit.verify import signed_by_any

SEAL_KEY = "batch_seal"
_SEAL_CONTEXT = b"mcp-tee-audit-batch\n"


class SealError(ValueError):
    """A stored block does not carry a valid seal; the message says which line and why."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def seal_message(seal: dict[str, Any]) -> bytes:
    """The exact bytes a seal signs: its fields, canonically serialised, after a context label."""
    return _SEAL_CONTEXT + json.dumps(seal, sort_keys=True, separators=(",", ":")).encode()


def _seq_of(line: bytes | str) -> int:
    return int(json.loads(line)["seq"])


def sealed_block(blob: str, lines: Sequence[str], signer: AuditSigner) -> bytes:
    """`lines` (chained JSON, no newlines) followed by one signed seal line, ready to append."""
    body = "".join(f"{line}\n" for line in lines).encode()
    seal = {"blob": blob, "first_seq": _seq_of(lines[0]), "last_seq": _seq_of(lines[-1]), "records": len(lines),
            "sha256": hashlib.sha256(body).hexdigest()}
    seal_line = json.dumps({SEAL_KEY: seal, "sig": signer.sign(seal_message(seal))}, separators=(",", ":"))
    return body + seal_line.encode() + b"\n"


def is_seal(line: bytes) -> bool:
    """True for a seal line (cheap: chain lines start with `{"seq"`)."""
    return line.startswith(b'{"' + SEAL_KEY.encode() + b'"')


def unseal_blob(blob: str, data: bytes, keys: Sequence[Ed25519PublicKey]) -> list[bytes]:
    """The chain lines of one stored blob, after checking that every line is covered by a valid seal.

    Raises:
        SealError: with the 1-based line number within the blob.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    chain: list[bytes] = []
    block: list[bytes] = []
    for number, raw in enumerate(lines, start=1):
        if not is_seal(raw):
            block.append(raw)
            continue
        _check_seal(blob, raw, block, keys, number)
        chain.extend(block)
        block = []
    if block:
        raise SealError(len(lines), f"the last {len(block)} line(s) of {blob} are not covered by a seal")
    return chain


def _check_seal(blob: str, raw: bytes, block: list[bytes], keys: Sequence[Ed25519PublicKey], number: int) -> None:
    try:
        parsed = json.loads(raw)
        seal = parsed[SEAL_KEY]
        first, last = (_seq_of(block[0]), _seq_of(block[-1])) if block else (None, None)
    except (ValueError, KeyError, TypeError):
        raise SealError(number, "malformed seal or sealed line") from None
    body = b"".join(line + b"\n" for line in block)
    expected = {"blob": blob, "first_seq": first, "last_seq": last, "records": len(block),
                "sha256": hashlib.sha256(body).hexdigest()}
    if seal != expected:
        raise SealError(number, "seal does not match the lines before it (edited, moved or cut)")
    if not signed_by_any(parsed.get("sig"), seal_message(seal), keys):
        raise SealError(number, "seal has no valid signature from a trusted key")
