"""The audit sink against Azurite: order, verification, restarts, exact appends, startup failures.

The store-down case (buffer full, refusals, drain) is driven through a server in test_backpressure.py.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.batch_seal import is_seal
from app.audit.blob_sink import BlobAuditSink
from app.audit.blob_store import AuditBlobStore, AuditStoreError
from app.audit.store_verify import verify_audit_store
from app.audit.log import AuditLog
from app.audit.signing import AuditSigner
from tests.support.azurite import Azurite

PREFIX = "mcp-tee"


def _store(azurite: Azurite, container: str, credential) -> AuditBlobStore:
    return AuditBlobStore(azurite.account_url, container, PREFIX, credential, connection_verify=azurite.ca_file,
                          timeout_s=2)


def _calls(store: AuditBlobStore) -> list[dict]:
    records = []
    for name in store.names():
        records += [json.loads(line) for line in store.read(name).split(b"\n") if line and not is_seal(line)]
    return [record for record in records if record.get("type") == "call"]


class TestShipping:
    def test_records_arrive_in_order_and_verify(self, azurite, container, credential, identity):
        signer = AuditSigner(Ed25519PrivateKey.generate())
        store = _store(azurite, container, credential)
        log = AuditLog(BlobAuditSink(store, signer), signer, checkpoint_every=10)
        for number in range(25):
            log.append({"type": "call", "tool": "query_database", "n": number})
        log.close()

        reader = _store(azurite, container, credential)
        assert [record["n"] for record in _calls(reader)] == list(range(25))
        result = verify_audit_store(reader, [signer._key.public_key()])
        assert result.ok, result.reason
        assert identity.client_id in identity.requests  # the managed identity, not a key

    def test_a_restart_continues_the_stored_chain(self, azurite, container, credential):
        first, second = (AuditSigner(Ed25519PrivateKey.generate()) for _ in range(2))
        for signer, tools in ((first, ["a", "b"]), (second, ["c"])):
            log = AuditLog(BlobAuditSink(_store(azurite, container, credential), signer), signer)
            for tool in tools:
                log.append({"type": "call", "tool": tool})
            log.close()

        reader = _store(azurite, container, credential)
        assert [record["tool"] for record in _calls(reader)] == ["a", "b", "c"]
        assert len(reader.names()) == 2  # one blob per writer, named in chain order
        keys = [first._key.public_key(), second._key.public_key()]
        result = verify_audit_store(reader, keys)
        assert result.ok and not result.warnings, (result.reason, result.warnings)
        assert not verify_audit_store(reader, keys[:1]).ok  # the second writer's checkpoints need its key

    def test_an_edited_blob_is_named(self, azurite, container, credential):
        signer = AuditSigner(Ed25519PrivateKey.generate())
        log = AuditLog(BlobAuditSink(_store(azurite, container, credential), signer), signer)
        log.append({"type": "call", "tool": "query_database", "principal": "alice"})
        log.close()
        store = _store(azurite, container, credential)
        name = store.names()[0]
        edited = store.read(name).replace(b'"alice"', b'"mallory"')
        blob = store._container.get_blob_client(name)
        blob.delete_blob()
        blob.create_append_blob()
        blob.append_block(edited)
        result = verify_audit_store(store, [signer._key.public_key()])
        assert not result.ok and name in result.reason


class TestAppendIsExact:
    def test_a_lost_reply_is_not_appended_twice(self, azurite, container, credential):
        store = _store(azurite, container, credential)
        blob = store.create(f"{PREFIX}/000000000000.jsonl")
        store.append(blob.name, 0, b"block\n")
        store.append(blob.name, 0, b"block\n")  # the retry of an append that had landed
        assert store.read(blob.name) == b"block\n"

    def test_another_writer_at_our_offset_is_refused(self, azurite, container, credential):
        store = _store(azurite, container, credential)
        blob = store.create(f"{PREFIX}/000000000000.jsonl")
        store.append(blob.name, 0, b"theirs\n")
        with pytest.raises(AuditStoreError, match="changed under this writer"):
            store.append(blob.name, 0, b"ours!!\n")


class TestFailClosed:
    def test_a_missing_container_stops_startup_without_leaking_a_token(self, azurite, credential):
        sink = BlobAuditSink(_store(azurite, "no-such-container", credential), AuditSigner(Ed25519PrivateKey.generate()))
        with pytest.raises(AuditStoreError) as raised:
            sink.chain_head()
        assert "eyJ" not in str(raised.value) and "Bearer" not in str(raised.value)

    def test_a_second_writer_on_the_same_chain_is_refused(self, azurite, container, credential):
        store = _store(azurite, container, credential)
        blob = store.create(f"{PREFIX}/000000000000.jsonl")
        store.append(blob.name, 0, b"first writer\n")
        with pytest.raises(AuditStoreError, match="another writer"):
            store.create(blob.name)
