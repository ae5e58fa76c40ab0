"""Bad input at the protocol level: raw HTTP against the real server; it answers and keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.canaries import assert_no_canary

HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-11-25"}


def initialize(client: httpx.Client, url: str) -> dict[str, str]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    response = client.post(url, json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    headers = {**HEADERS, "Mcp-Session-Id": response.headers["mcp-session-id"]}
    client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BAD_BODIES = {
    "malformed-json": b'{"jsonrpc": "2.0", "id": 2, "method": ',
    "not-json-rpc": b'{"hello": "world"}',
    "invalid-utf8": b'{"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"x": "\xff\xfe"}}',
    "deeply-nested": ('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "query_database", '
                      f'"arguments": {{"sql": {nested(100_000)}}}}}}}').encode(),
    "unknown-method": b'{"jsonrpc": "2.0", "id": 2, "method": "tools/explode"}',
    "wrong-argument-type": b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "query_database", "arguments": {"sql": {"a": 1}}}}',
    "huge-string": json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                               "params": {"name": "github_search_issues", "arguments": {"query": "x" * 1_000_000}}}).encode(),
    "array-batch": b'[{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]',
}


class TestProtocolAbuse:
    @pytest.mark.parametrize("name", list(BAD_BODIES))
    def test_bad_bodies_get_a_clear_answer_and_the_server_survives(self, server, name):
        with httpx.Client(timeout=20) as client:
            headers = initialize(client, server.url)
            response = client.post(server.url, content=BAD_BODIES[name], headers=headers)
            assert response.status_code < 500, f"{name}: {response.status_code}"
            assert "Traceback" not in response.text
            if response.status_code == 200:
                assert '"error"' in response.text or '"isError":true' in response.text, response.text[:300]
            healthy = client.get(f"{server.base_url}/healthz")
        assert healthy.status_code == 200 and server.alive()

    def test_oversized_bodies_are_refused_before_parsing(self, server):
        with httpx.Client(timeout=20) as client:
            headers = initialize(client, server.url)
            response = client.post(server.url, content=b" " * (5 * 1024 * 1024), headers=headers)
        assert response.status_code == 413

    def test_no_canary_in_anything_the_server_printed(self, server):
        assert_no_canary([server.output()], "the server's logs after protocol abuse")
