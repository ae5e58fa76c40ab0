"""The toy stack behind real bearer auth on 127.0.0.1, plus raw JSON-RPC helpers for both protocol eras."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.auth.resource_server import protect_app
from app.auth.settings import AuthSettings
from app.config import DEFAULT_REQUEST_BODY_TIMEOUT_S
from app.server.http_limits import listener_options
from tests.support.stack import Stack, free_port, serve

ISSUER = "https://issuer.example.test/"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_JWK = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key())), "kid": "k-1", "alg": "RS256"}
ACCEPT = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def bearer_token(audience: str, subject: str, scopes: str = "mcp:read mcp:write") -> str:
    """A token from the test issuer (`ISSUER`, keys served by `jwks_app`) for `subject`."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "exp": now + 300, "scope": scopes}
    return jwt.encode(claims, _KEY, algorithm="RS256", headers={"kid": "k-1"})


def jwks_app() -> Starlette:
    """The test issuer's JWKS on `/jwks`."""
    return Starlette(routes=[Route("/jwks", lambda request: JSONResponse({"keys": [_JWK]}))])


class AuthedStack:
    """`Stack` behind `protect_app`, served by uvicorn; `url` is the MCP endpoint (and the token audience)."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url

    def token(self, subject: str, scopes: str = "mcp:read mcp:write") -> str:
        return bearer_token(self.url, subject, scopes)

    def headers(self, subject: str, **extra: str) -> dict[str, str]:
        return {**ACCEPT, "Authorization": f"Bearer {self.token(subject)}", **extra}

    def initialize(self, client: httpx.Client, subject: str) -> httpx.Response:
        """A 2025-11-25 `initialize`: opens an MCP session when it succeeds."""
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
        return client.post(self.url, json=body, headers=self.headers(subject))

    def open_session(self, client: httpx.Client, subject: str) -> dict[str, str]:
        """Initialize a 2025-11-25 session; returns the headers that use it."""
        opened = self.initialize(client, subject)
        assert opened.status_code == 200, opened.text
        headers = self.headers(subject, **{"Mcp-Session-Id": opened.headers["mcp-session-id"],
                                           "MCP-Protocol-Version": LEGACY})
        client.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        return headers

    def legacy_call(self, client: httpx.Client, session: dict[str, str], tool: str,
                    arguments: dict[str, Any]) -> dict[str, Any]:
        """One `tools/call` inside an open 2025-11-25 session; returns the JSON-RPC response."""
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        response = client.post(self.url, json=body, headers=session, timeout=30)
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1] if data else response.text)

    def modern_call(self, subject: str, tool: str, arguments: dict[str, Any], *,
                    request_state: str | None = None, responses: dict[str, Any] | None = None) -> dict[str, Any]:
        """One sessionless 2026-07-28 `tools/call`; returns the JSON-RPC response."""
        params: dict[str, Any] = {"name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}}}
        if request_state is not None:
            params["requestState"] = request_state
        if responses is not None:
            params["inputResponses"] = responses
        headers = self.headers(subject, **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                                           "Mcp-Name": tool})
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        return httpx.post(self.url, json=body, headers=headers, timeout=20).json()


@contextmanager
def authed_stack(tmp_path: Path, *, body_timeout_s: float = DEFAULT_REQUEST_BODY_TIMEOUT_S,
                 **stack_options) -> Iterator[AuthedStack]:
    """A JWKS stand-in and the toy stack behind bearer auth, both on loopback, for one test.

    The stack's listener is bounded as in production (`listener_options`); tests shorten the body deadline.
    """
    stack = Stack(tmp_path, auth_enabled=True, **stack_options)
    with ExitStack() as running:
        jwks = running.enter_context(serve(jwks_app()))
        port = free_port()
        url = f"http://127.0.0.1:{port}/mcp"
        settings = AuthSettings(ISSUER, f"{jwks}/jwks", url)
        app = protect_app(stack.http_app(), settings, on_refusal=stack.record_refusal)
        running.enter_context(serve(app, port, **listener_options(body_timeout_s=body_timeout_s,
                                                                  on_refusal=stack.record_refusal)))
        yield AuthedStack(stack, url)
