"""Shared test fixtures-by-function: a toy server with our tool names, a fake clock, local servers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastmcp import Client, FastMCP
from fastmcp.server.dependencies import get_http_headers
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.audit.log import AuditLog
from app.audit.signing import AuditSigner
from app.middleware.breakers import Breakers
from app.capability_policy import CapabilityPolicy, load_policy, policy_from_mapping
from app.auth.principal import PrincipalProvider
from app.auth.resource_server import HttpRefusal
from app.middleware.quotas import RateLimiter
from app.middleware.refusals import RefusalLedger
from app.audit.redaction import Redactor
from app.middleware.audit import record_http_refusal
from app.middleware.stack import build_middleware
from app.server.session_admission import SESSION_IDLE_TIMEOUT_S, SessionAdmission
from app.tools.catalog import TOOL_SPECS
from app.errors import UpstreamError

READ_ONLY = frozenset({"mcp:read"})
READ_WRITE = frozenset({"mcp:read", "mcp:write"})


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


POLICY_TEXT = (Path(__file__).parents[2] / "app" / "capabilities.toml").read_text()


def policy_document() -> dict[str, Any]:
    """The packaged policy as plain data, a fresh copy each call."""
    return tomllib.loads(POLICY_TEXT)


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if value is DELETE:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


DELETE = object()  # a value in `policy_with` changes that removes the key


def policy_with(changes: Mapping[str, Any]) -> CapabilityPolicy:
    """The packaged policy with `changes` deep-merged in as data, validated.

    Example:
        >>> policy_with({"upstreams": {"github": {"max_concurrency": 1}}})

    Raises PolicyError when the result is invalid.
    """
    document = policy_document()
    _merge(document, changes)
    return policy_from_mapping(document, source="test-policy")


class Stack:
    """A toy server exposing our tool names (plus an undeclared one) behind the production middleware chain."""

    def __init__(self, tmp_path: Path, *, scopes: frozenset[str] = READ_WRITE, auth_enabled: bool = False,
                 policy: CapabilityPolicy | None = None, clock: FakeClock | None = None,
                 secrets: tuple[str, ...] = ()) -> None:
        self.policy = policy or load_policy()
        self.clock = clock or FakeClock()
        self.signer_key = Ed25519PrivateKey.generate()
        self.audit_path = tmp_path / "audit.jsonl"
        self.audit = AuditLog(self.audit_path, AuditSigner(self.signer_key), checkpoint_every=5)
        self.redactor = Redactor(secrets)
        self.breakers = Breakers(self.policy.upstreams, clock=self.clock)
        self.limiter = RateLimiter(self.policy, clock=self.clock)
        self.refusals = RefusalLedger(self.policy.refusals, clock=self.clock)
        self.principals = PrincipalProvider(auth_enabled=auth_enabled, local_scopes=scopes)
        # The production composition (`build_middleware`, as `assemble` calls it) over toy tools
        # that carry the real tools' specs, so the order under test is the order that runs.
        self.server = FastMCP("toy", middleware=build_middleware(
            self.policy, TOOL_SPECS, audit=self.audit, redactor=self.redactor, breakers=self.breakers,
            principals=self.principals, quotas=self.limiter, refusals=self.refusals, confirmation_timeout_s=5))
        self.upstream_fault: Exception | None = None
        self.github_url: str | None = None
        self.gate: asyncio.Event | None = None
        self._register()

    def _register(self) -> None:
        server = self.server

        @server.tool
        async def github_search_issues(query: str, repo: str | None = None, max_results: int = 10) -> dict:
            if self.gate is not None:
                await self.gate.wait()
            if self.upstream_fault is not None:
                raise self.upstream_fault
            if self.github_url is not None:
                await _call_stand_in(self.github_url)
            return {"issues": [{"title": f"rotate the ghp_ token ({query})"}]}

        @server.tool
        def query_database(sql: str, max_rows: int = 100) -> dict:
            return {"row_count": 2, "rows": [[1], [2]]}

        @server.tool
        def send_notification(message: str, channel: str = "general", urgency: str = "normal") -> str:
            return "sent"

        @server.tool
        def attestation_status(nonce: str | None = None) -> dict:
            headers = get_http_headers(include_all=True)
            return {"mode": "env", "saw_authorization": "authorization" in headers,
                    "breakers": self.breakers.snapshot()}

        @server.custom_route("/healthz", methods=["GET"])
        async def healthz(request: Request) -> JSONResponse:
            return JSONResponse({"ok": True, "breakers": self.breakers.snapshot()})

        @server.tool
        def debug_dump_env() -> str:
            return "should never be reachable"

    def http_app(self):
        """The toy server over streamable HTTP on /mcp, behind session admission as in production."""
        app = self.server.http_app(path="/mcp", session_idle_timeout=SESSION_IDLE_TIMEOUT_S)
        self.admission = SessionAdmission(app, self.policy.sessions, "/mcp", clock=self.clock,
                                          on_refusal=self.record_refusal)
        return self.admission

    def record_refusal(self, refusal: HttpRefusal) -> None:
        """Audit a refusal at the HTTP layer, as `AssembledServer.record_refusal` does."""
        record_http_refusal(self.audit, self.redactor, refusal)

    def client(self, **options) -> Client:
        """An in-memory client whose user accepts every confirmation prompt."""
        async def accept(message, response_type, params, context):
            return True

        return Client(self.server, elicitation_handler=accept, **options)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def calls(self) -> list[dict]:
        return [r for r in self.records() if r["type"] == "call"]


async def _call_stand_in(url: str) -> None:
    """What a thin upstream client does: any transport failure or 5xx becomes an UpstreamError."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        raise UpstreamError("github", "github could not be reached") from None
    if response.status_code >= 500:
        raise UpstreamError("github", f"github answered {response.status_code}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app, port: int | None = None, server_class: type[uvicorn.Server] = uvicorn.Server,
          **options) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a background thread; yields its base URL."""
    port = port or free_port()
    server = server_class(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                         timeout_graceful_shutdown=1, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
