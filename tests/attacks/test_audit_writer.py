"""One request must not stop the audit: a lone surrogate in a call's arguments once killed the writer thread.

On MCP 2026-07-28 the SDK parses requests with `json.loads`, which accepts an escaped lone surrogate
(`"\\ud800"`). The audit record kept it, the writer thread failed to encode the line and died, and
every later call was served unaudited (reproduced by the review of the writer-thread change).
"""

from __future__ import annotations

import json

import httpx

from app.audit.verify import verify_audit_log
from tests.support.authed import MODERN, authed_stack


def call_with_lone_surrogate(authed, subject: str) -> dict:
    """A 2026-07-28 `tools/call` whose argument is `"\\ud800"` on the wire (httpx's own JSON could not send it)."""
    params = {"name": "no_such_tool", "arguments": {"x": "\ud800"}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})  # ASCII: "\ud800"
    headers = authed.headers(subject, **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                                         "Mcp-Name": "no_such_tool", "Content-Type": "application/json"})
    return httpx.post(authed.url, content=body.encode(), headers=headers, timeout=20).json()


class TestALoneSurrogateCannotStopTheAudit:
    def test_the_call_and_every_later_call_are_recorded_and_the_chain_verifies(self, tmp_path):
        with authed_stack(tmp_path) as authed:
            call_with_lone_surrogate(authed, "mallory")
            answer = authed.modern_call("alice", "attestation_status", {})
            assert "result" in answer
            authed.stack.audit.close()
            calls = authed.stack.calls()
            public_key = authed.stack.signer_key.public_key()
        assert [call["principal"] for call in calls] == ["mallory", "alice"]
        assert authed.stack.records()[-1]["final"] is True
        assert verify_audit_log(authed.stack.audit_path, public_key).ok
