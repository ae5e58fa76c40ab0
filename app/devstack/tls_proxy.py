"""A TLS-terminating proxy with its own certificate: the man in the middle `make demo` and the tests put in the path.

It is what a hostile host, or a TLS-terminating load balancer, looks like to
the agent: a valid TLS endpoint with some other key, forwarding everything to
the real server. It records what reached it (request headers, JSON-RPC methods
and tool names) so a demo or a test can show that the agent refused before a
bearer token or a credential ever arrived.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.attestation.channel import TlsChannel
from app.devstack.threaded import ThreadedServer

# Never forwarded: they describe one hop, and the proxy re-frames the body.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                         "content-length"})
UPSTREAM_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SeenRequest:
    """One request that reached the proxy."""

    method: str
    path: str
    header_names: frozenset[str]
    rpc_methods: tuple[str, ...] = ()
    tool_names: tuple[str, ...] = ()
    raw: bytes = field(default=b"", repr=False)


def _rpc(body: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        message = json.loads(body)
    except ValueError:
        return (), ()
    messages = [m for m in (message if isinstance(message, list) else [message]) if isinstance(m, dict)]
    methods = tuple(str(m.get("method", "")) for m in messages)
    tools = tuple(str((m.get("params") or {}).get("name")) for m in messages if m.get("method") == "tools/call")
    return methods, tools


class TlsTerminatingProxy:
    """Serves HTTPS on a loopback port with its own key and forwards every request to ``upstream``.

    Args:
        upstream: The real server's base URL (``https://127.0.0.1:PORT``); its certificate is not checked,
            as an attacker would not.

    Example:
        with TlsTerminatingProxy(server.base_url) as proxy:
            ...  # point the agent at proxy.url; then inspect proxy.seen
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.tls = TlsChannel.generate()
        self.seen: list[SeenRequest] = []
        self._client: httpx.AsyncClient | None = None  # made in the proxy's own event loop
        routes = [Route("/{path:path}", self._forward, methods=["GET", "POST", "DELETE"])]
        self._server = ThreadedServer(Starlette(routes=routes), tls=self.tls)
        self.base_url = self._server.url
        self.url = f"{self._server.url}/mcp"

    @property
    def saw_authorization(self) -> bool:
        return any("authorization" in request.header_names for request in self.seen)

    @property
    def tools_called(self) -> list[str]:
        return [tool for request in self.seen for tool in request.tool_names]

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append(SeenRequest(request.method, request.url.path,
                                     frozenset(name.lower() for name in request.headers), *_rpc(body), raw=body))
        if self._client is None:
            self._client = httpx.AsyncClient(verify=False, timeout=UPSTREAM_TIMEOUT_S)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        target = f"{self.upstream}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        outgoing = self._client.build_request(request.method, target, content=body, headers=headers)
        upstream = await self._client.send(outgoing, stream=True)
        answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=answer_headers,
                                 background=BackgroundTask(upstream.aclose))

    def __enter__(self) -> TlsTerminatingProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()
