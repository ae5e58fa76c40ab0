"""Fail closed on audit backpressure: with Azurite down, calls are refused once the buffer is full, no record
is lost, and when Azurite comes back the buffer drains and calls run again."""

from __future__ import annotations

import asyncio
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

import pytest

from app.audit.batch_seal import is_seal
from app.audit.blob_sink import BlobAuditSink
from app.audit.blob_store import AuditBlobStore
from app.audit.store_verify import verify_audit_store
from app.middleware.audit import AuditMiddleware
from app.audit.log import AuditLog
from app.audit.signing import AuditSigner
from app.auth.principal import PrincipalProvider
from app.audit.redaction import Redactor
from app.middleware.audit_backpressure import REFUSAL_RECORD, AuditBackpressureMiddleware
from tests.audit.conftest import make_container
from tests.support.azurite import Azurite

CAPACITY = 4
DRAIN_TIMEOUT_S = 30.0


def _server(log: AuditLog, gate: AuditBackpressureMiddleware) -> FastMCP:
    principals = PrincipalProvider(auth_enabled=False)
    mcp = FastMCP("backpressure", middleware=[gate, AuditMiddleware(log, Redactor(), principals)])

    @mcp.tool
    def echo(text: str) -> str:
        return text

    return mcp


def _records(store: AuditBlobStore) -> list[dict]:
    return [json.loads(line) for name in store.names() for line in store.read(name).split(b"\n")
            if line and not is_seal(line)]


async def test_calls_are_refused_while_the_store_is_down_and_nothing_is_lost(tmp_path, credential):
    azurite = Azurite(tmp_path).start()
    try:
        container = make_container(azurite, credential)
        store = AuditBlobStore(azurite.account_url, container, "mcp-tee", credential,
                               connection_verify=azurite.ca_file, timeout_s=2)
        signer = AuditSigner(Ed25519PrivateKey.generate())
        sink = BlobAuditSink(store, signer, capacity=CAPACITY, retry_max_s=0.2)
        log = AuditLog(sink, signer)
        gate = AuditBackpressureMiddleware(log, PrincipalProvider(auth_enabled=False))
        async with Client(_server(log, gate)) as client:
            azurite.stop()
            ran = 0
            with pytest.raises(ToolError, match="audit store is unavailable") as refused:
                for ran in range(1, 100):
                    await client.call_tool("echo", {"text": f"call {ran}"})
                    await asyncio.sleep(0.02)  # lets the batch reach the sink
            assert "Traceback" not in str(refused.value)
            ran -= 1  # the last attempt was refused
            with pytest.raises(ToolError, match="audit store is unavailable"):
                await client.call_tool("echo", {"text": "refused again"})

            azurite.start()
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while not log.has_room() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (await client.call_tool("echo", {"text": "after"})).data == "after"
        gate.flush()
        log.close()

        reader = AuditBlobStore(azurite.account_url, container, "mcp-tee", credential,
                                connection_verify=azurite.ca_file)
        records = _records(reader)
        calls = [record for record in records if record.get("type") == "call"]
        assert len(calls) == ran + 1  # every call that ran, none refused, the one after recovery
        (summary,) = [record for record in records if record.get("type") == REFUSAL_RECORD]
        assert summary["refusals"] == [{"principal": "local-dev", "tool": "echo", "count": 2}]
        assert verify_audit_store(reader, [signer._key.public_key()]).ok
    finally:
        azurite.stop()
