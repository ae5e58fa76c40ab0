"""Verify the audit chain as stored in the blob store: every block's seal, then the chain across blobs.

The seals are checked blob by blob (each covers the lines before it and names its blob), then the
chain lines of all blobs, in name order, go through the same verifier as a file-based log, so the
rules are identical: seq order, prev hashes, signed checkpoints, a final checkpoint at the end.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit.batch_seal import SealError, unseal_blob
from app.audit.blob_store import AuditBlobStore
from app.audit.verify import ExpectedHead, VerifyResult, verify_audit_lines


def verify_audit_store(store: AuditBlobStore, public_keys: Iterable[Ed25519PublicKey], *,
                       expect_head: ExpectedHead | None = None) -> VerifyResult:
    """Read back every audit blob under the store's prefix and verify it; raises only `AuditStoreError`.

    Example:
        >>> result = verify_audit_store(AuditBlobStore(url, "audit", "mcp-tee", credential), [key])
        >>> result.ok, result.reason
    """
    keys = list(public_keys)
    chain: list[bytes] = []
    for name in store.names():
        try:
            chain.extend(unseal_blob(name, store.read(name), keys))
        except SealError as bad:
            return VerifyResult(ok=False, records=len(chain), bad_line=bad.line, reason=f"{name}: {bad.reason}")
    result = verify_audit_lines(chain, keys, expect_head=expect_head)
    if result.ok or result.bad_line is None:
        return result
    return VerifyResult(ok=False, records=result.records, bad_line=result.bad_line,
                        reason=f"record {result.bad_line} of the stored chain: {result.reason}",
                        warnings=result.warnings)
