"""The audit chain's home in the customer's Azure Storage: append blobs, written only at expected offsets.

Threat model: the storage account is outside the TEE and its administrators can change blobs; the
chain and the batch seals make every change visible to `audit verify`, they cannot prevent it (an
immutability policy on the container can). This module only moves bytes. It never creates the
container (the deployment does, with a least-privilege role for the workload identity). Every
append names the offset it expects, so a second writer or a retried append can neither interleave
nor duplicate a block. Errors name the operation and the exception type, never a token or URL
query. The real `azure-storage-blob` client is used the same way against Azure and Azurite; only
the endpoint, the credential's token source and the CA file differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobServiceClient

# Azure's limits for append blobs: 50,000 blocks per blob, 4 MiB per block (older API versions).
MAX_BLOCKS_PER_BLOB = 50_000
MAX_BLOCK_BYTES = 4 * 1024 * 1024
# How much of the newest blob is read to find the chain head (one record is far smaller).
TAIL_BYTES = 1024 * 1024
BLOB_SUFFIX = ".jsonl"
DEFAULT_TIMEOUT_S = 10.0
PRECONDITION_FAILED = 412


class AuditStoreError(Exception):
    """A store operation failed; the message names the operation and the exception type only."""


@dataclass(frozen=True)
class BlobState:
    """One append blob: its name, committed size and block count."""

    name: str
    size: int
    blocks: int


def blob_name(prefix: str, first_seq: int) -> str:
    """Blob names sort in chain order: `<prefix>/<first seq, 12 digits>.jsonl`."""
    return f"{prefix}/{first_seq:012d}{BLOB_SUFFIX}"


class AuditBlobStore:
    """Reads and appends the audit blobs under one prefix of one container.

    Args:
        account_url: `https://<account>.blob.core.windows.net` (Azurite: `https://127.0.0.1:PORT/devstoreaccount1`).
        container: The container the deployment created.
        prefix: The folder of this writer's chain (one chain per server instance).
        credential: The group's `ManagedIdentityCredential` in Azure.
        connection_verify: A CA file for a private endpoint's certificate (Azurite in tests).

    Example:
        >>> store = AuditBlobStore(url, "audit", "mcp-tee", ManagedIdentityCredential(client_id=cid))
        >>> store.newest()
    """

    def __init__(self, account_url: str, container: str, prefix: str, credential: TokenCredential, *,
                 connection_verify: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        options: dict[str, Any] = {"connection_verify": connection_verify} if connection_verify else {}
        # Retries are the shipper's job (it buffers and backs off); the SDK's own would block it for minutes.
        service = BlobServiceClient(account_url, credential=credential, retry_total=0,
                                    connection_timeout=timeout_s, read_timeout=timeout_s, **options)
        self._service = service
        self._container = service.get_container_client(container)
        self.prefix = prefix.strip("/")

    def _call(self, operation: str, action):
        try:
            return action()
        except AzureError as exc:
            raise AuditStoreError(f"audit store: {operation} failed ({type(exc).__name__})") from None

    def names(self) -> list[str]:
        """Every audit blob under the prefix, in chain order."""
        listing = self._call("list", lambda: [blob.name for blob in
                                              self._container.list_blobs(name_starts_with=self.prefix + "/")])
        return sorted(name for name in listing if name.endswith(BLOB_SUFFIX))

    def state(self, name: str) -> BlobState:
        props = self._call("read properties", lambda: self._container.get_blob_client(name).get_blob_properties())
        return BlobState(name, int(props.size), int(props.append_blob_committed_block_count or 0))

    def newest(self) -> BlobState | None:
        """The last blob of the chain, or None for an empty store."""
        names = self.names()
        return self.state(names[-1]) if names else None

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        client = self._container.get_blob_client(name)
        # No range for a whole read: a range on an empty blob is an error (416), not an empty body.
        whole = offset == 0 and length is None
        return self._call("read", lambda: client.download_blob(offset=None if whole else offset,
                                                               length=length).readall())

    def tail(self, state: BlobState) -> bytes:
        """Up to `TAIL_BYTES` from the end of a blob, starting at a line boundary."""
        start = max(0, state.size - TAIL_BYTES)
        data = self.read(state.name, start, state.size - start) if state.size else b""
        return data if start == 0 else data.split(b"\n", 1)[-1]

    def create(self, name: str) -> BlobState:
        """Create an empty append blob; an existing empty one (its writer died before appending) is reused.

        Raises:
            AuditStoreError: the blob exists and holds records: another writer owns this chain.
        """
        client = self._container.get_blob_client(name)
        try:
            client.create_append_blob(match_condition=MatchConditions.IfMissing)
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise AuditStoreError(f"audit store: create failed ({type(exc).__name__})") from None
        state = self.state(name)
        if state.size:
            raise AuditStoreError(f"audit store: {name} already holds records (another writer on this prefix?)")
        return state

    def append(self, name: str, offset: int, block: bytes) -> None:
        """Append `block` at exactly `offset`; an earlier attempt that landed unseen counts as done.

        Raises:
            AuditStoreError: the store is unreachable, or the blob holds something else at `offset`
                (another writer): never retried blindly, since that could duplicate or interleave.
        """
        client = self._container.get_blob_client(name)
        try:
            client.append_block(block, appendpos_condition=offset)
            return
        except HttpResponseError as exc:
            if exc.status_code != PRECONDITION_FAILED:
                raise AuditStoreError(f"audit store: append failed ({type(exc).__name__})") from None
            # The append position moved: maybe our own earlier attempt, whose reply was lost.
        except AzureError as exc:
            raise AuditStoreError(f"audit store: append failed ({type(exc).__name__})") from None
        if self.state(name).size == offset + len(block) and self.read(name, offset, len(block)) == block:
            return
        raise AuditStoreError(f"audit store: {name} changed under this writer (another writer?)")

    def close(self) -> None:
        self._service.close()
