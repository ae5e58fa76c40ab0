"""A minimal MCP client for load: raw JSON-RPC over streamable HTTP, so the load generator stays light.

The official client validates every message with pydantic and runs a task group per session;
with 128 concurrent clients on two cores that would measure the client, not the server. This one
does the 2025-11-25 handshake once, then posts `tools/call` and parses the JSON or SSE answer.
"""

from __future__ import annotations

import itertools
import json

import httpx

PROTOCOL_VERSION = "2025-11-25"


class McpCallError(RuntimeError):
    """The server answered with a JSON-RPC error or an HTTP error."""


class RawMcpClient:
    """One MCP session on its own HTTP connection.

    Args:
        url: The server's `/mcp` URL.
        headers: Extra headers (a bearer token).

    Example:
        async with RawMcpClient(url) as client:
            result = await client.call("echo", {"text": "hi"})
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self._url = url
        self._headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                         **(headers or {})}
        self._http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1))
        self._ids = itertools.count(1)

    async def __aenter__(self) -> "RawMcpClient":
        answer = await self._post("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                                 "clientInfo": {"name": "mcp-tee-bench", "version": "1"}})
        self._headers["Mcp-Session-Id"] = answer.headers.get("mcp-session-id", "")
        self._headers["MCP-Protocol-Version"] = PROTOCOL_VERSION
        await self._http.post(self._url, headers=self._headers,
                              json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._http.aclose()

    async def call(self, tool: str, arguments: dict) -> dict:
        """The `tools/call` result (`isError` set for a tool error); raises `McpCallError` on protocol errors."""
        response = await self._post("tools/call", {"name": tool, "arguments": arguments})
        message = _message(response)
        if "error" in message:
            raise McpCallError(str(message["error"])[:200])
        return message["result"]

    async def _post(self, method: str, params: dict) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            response = await self._http.post(self._url, headers=self._headers, json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # uvicorn closes a keep-alive connection idle for 5 s; the session lives on, so reconnect once.
            response = await self._http.post(self._url, headers=self._headers, json=body)
        if response.status_code != 200:
            raise McpCallError(f"HTTP {response.status_code}: {response.text[:200]}")
        return response


def _message(response: httpx.Response) -> dict:
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    for line in response.text.splitlines():  # server-sent events: the answer is the data line with an id
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if "id" in message:
                return message
    raise McpCallError("no JSON-RPC answer in the response")


def result_text(result: dict) -> str:
    return " ".join(part.get("text", "") for part in result.get("content", []))
