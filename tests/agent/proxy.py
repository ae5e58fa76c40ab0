"""Tampering past TLS, for defense-in-depth tests: rewrites the MCP JSON-RPC results an agent receives.

The attested channel stops a network man in the middle in the TLS handshake
(see ``test_channel_threats.py``). These tests ask what the agent's content
checks do if that layer were beaten anyway (an extracted key is out of scope
by the TEE's guarantee, but checks should not lean on one another): the
rewriter sits *inside* the agent's pinned HTTP client, after TLS, and hands
each JSON-RPC result to ``rewrite(method, tool, result)`` so a test can swap a
session key, replay an old token or poison a tool list. :func:`wrap_pinned_transports`
reaches one seam further in: every pinned client, the attestation route's included.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx2

from app.agent import channel as channel_module
from app.agent.channel import AttestedChannel
from app.agent.pinning import ChannelPin, pinned_async_client

Rewrite = Callable[[str, "str | None", dict[str, Any]], dict[str, Any]]
# Recomputed by httpx2 for the rewritten body.
STALE_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


def wrap_pinned_transports(monkeypatch, wrap: Callable[[httpx2.AsyncBaseTransport], httpx2.AsyncBaseTransport]) -> None:
    """Every pinned client the channel module makes sends through ``wrap(its own transport)``, past TLS."""

    def wrapped(pin: ChannelPin, **options: Any) -> httpx2.AsyncClient:
        client = pinned_async_client(pin, **options)
        client._transport = wrap(client._transport)
        return client

    monkeypatch.setattr(channel_module, "pinned_async_client", wrapped)


def _requests_by_id(body: bytes) -> dict[Any, tuple[str, str | None]]:
    try:
        message = json.loads(body)
    except ValueError:
        return {}
    messages = message if isinstance(message, list) else [message]
    return {m["id"]: (m.get("method", ""), (m.get("params") or {}).get("name")) for m in messages
            if isinstance(m, dict) and "id" in m}


class RewritingProxy:
    """Rewrites what every pinned agent client receives from ``url``, once :meth:`install` ran.

    Example:
        proxy.rewrite = lambda method, tool, result: result
        async with AttestedSession(proxy.url, trust=...) as session: ...
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.rewrite: Rewrite | None = None
        self.rewrite_headers: Callable[[dict[str, str]], dict[str, str]] | None = None
        self.results: list[tuple[str, str | None, dict[str, Any]]] = []

    def install(self, monkeypatch) -> RewritingProxy:
        original = AttestedChannel.http_client
        proxy = self

        def tampered_client(channel: AttestedChannel, **options: Any) -> httpx2.AsyncClient:
            client = original(channel, **options)
            client._transport = _Rewriting(client._transport, proxy)
            return client

        monkeypatch.setattr(AttestedChannel, "http_client", tampered_client)
        return self

    def _rewrite_message(self, message: Any, requests: dict[Any, tuple[str, str | None]]) -> Any:
        if not isinstance(message, dict) or message.get("id") not in requests or "result" not in message:
            return message
        method, tool = requests[message["id"]]
        self.results.append((method, tool, message["result"]))
        if self.rewrite is not None:
            message = {**message, "result": self.rewrite(method, tool, message["result"])}
        return message

    def rewrite_body(self, raw: bytes, content_type: str, request_body: bytes) -> bytes:
        requests = _requests_by_id(request_body)
        if not raw.strip():
            return raw
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


class _Rewriting(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, proxy: RewritingProxy) -> None:
        self._inner = inner
        self._proxy = proxy

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if request.method != "POST" or not request.url.path.endswith("/mcp"):
            return response
        raw = await response.aread()
        await response.aclose()
        headers = {k: v for k, v in response.headers.items() if k.lower() not in STALE_HEADERS}
        if self._proxy.rewrite_headers is not None:
            headers = self._proxy.rewrite_headers(headers)
        content = self._proxy.rewrite_body(raw, response.headers.get("content-type", ""), request.content)
        return httpx2.Response(response.status_code, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()
