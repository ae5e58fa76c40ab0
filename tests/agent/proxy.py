"""A man in the middle for tests: a real HTTP proxy on 127.0.0.1 that can rewrite MCP JSON-RPC results.

It forwards every request to the server unchanged. For POSTs it buffers the
answer (JSON or SSE), and hands each JSON-RPC result to ``rewrite(method, tool,
result)`` so a test can swap a session key, replay an old token or poison a
tool list. GETs (the server's notification stream) are streamed through.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.devstack.threaded import ThreadedServer

# Never forwarded: they describe one hop, and the proxy re-frames the body.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                         "content-length", "accept-encoding", "content-encoding"})
Rewrite = Callable[[str, "str | None", dict[str, Any]], dict[str, Any]]


def _forwardable(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in HOP_HEADERS}


def _requests_by_id(body: bytes) -> dict[Any, tuple[str, str | None]]:
    try:
        message = json.loads(body)
    except ValueError:
        return {}
    messages = message if isinstance(message, list) else [message]
    return {m["id"]: (m.get("method", ""), (m.get("params") or {}).get("name")) for m in messages
            if isinstance(m, dict) and "id" in m}


class RewritingProxy:
    """Forwards ``/mcp`` to ``upstream``; ``rewrite`` and ``rewrite_headers`` change what the client receives.

    Args:
        upstream: The server's base URL (``http://127.0.0.1:PORT``).

    Example:
        with RewritingProxy(server.base_url) as proxy:
            proxy.rewrite = lambda method, tool, result: result
            AttestedSession(proxy.url, trust=...)
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rewrite: Rewrite | None = None
        self.rewrite_headers: Callable[[dict[str, str]], dict[str, str]] | None = None
        self.results: list[tuple[str, str | None, dict[str, Any]]] = []
        self._client: httpx.AsyncClient | None = None  # made in the proxy's own event loop
        self._server = ThreadedServer(Starlette(routes=[Route("/mcp", self._forward,
                                                              methods=["GET", "POST", "DELETE"])]))
        self.url = f"{self._server.url}/mcp"

    def _rewrite_message(self, message: Any, requests: dict[Any, tuple[str, str | None]]) -> Any:
        if not isinstance(message, dict) or message.get("id") not in requests or "result" not in message:
            return message
        method, tool = requests[message["id"]]
        self.results.append((method, tool, message["result"]))
        if self.rewrite is not None:
            message = {**message, "result": self.rewrite(method, tool, message["result"])}
        return message

    def _rewrite_body(self, raw: bytes, content_type: str, requests: dict[Any, tuple[str, str | None]]) -> bytes:
        if content_type.startswith("application/json"):
            return json.dumps(self._rewrite_message(json.loads(raw), requests)).encode()
        if not content_type.startswith("text/event-stream"):
            return raw
        lines = []
        for line in raw.decode().split("\n"):
            if line.startswith("data:") and line[5:].strip().startswith("{"):
                line = "data: " + json.dumps(self._rewrite_message(json.loads(line[5:]), requests))
            lines.append(line)
        return "\n".join(lines).encode()

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30)
        outgoing = self._client.build_request(request.method, self.upstream + "/mcp", content=body,
                                              headers=_forwardable(request.headers))
        upstream = await self._client.send(outgoing, stream=True)
        headers = _forwardable(upstream.headers)
        if self.rewrite_headers is not None:
            headers = self.rewrite_headers(headers)
        if request.method != "POST":
            return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=headers,
                                     background=BackgroundTask(upstream.aclose))
        raw = await upstream.aread()
        await upstream.aclose()
        content = self._rewrite_body(raw, upstream.headers.get("content-type", ""), _requests_by_id(body))
        return Response(content, status_code=upstream.status_code, headers=headers)

    def __enter__(self) -> RewritingProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
