"""`AttestedSession`: an MCP client session that proves what code serves it before exposing any tool.

Threat model: over HTTP, TLS authenticates an endpoint, not the code behind it.
A hostile operator, a man in the middle or a swapped deployment can answer
instead of the attested server, or change the tool list after it was attested.
So, before any credential: :func:`app.agent.channel.attest_channel` verifies
the server over its pre-auth route and pins the TLS key the attestation binds
(an ``http://`` URL cannot be pinned and never verifies). Then, with the bearer
token on that pinned channel only, on the same MCP session the tools will run on:

1. lists the tools and digests them (``runtime_data.tools_digest``);
2. sends a fresh 32-byte nonce to ``attestation_status``;
3. checks the answer with :func:`app.agent.checks.check_status`, the same
   rules :meth:`AttestedChannel.verify_status` applies: the MAA token verifies
   against the issuer and hostdata *we* trust (never ones the server names),
   and the signed ``x-ms-runtime`` is the runtime data in the answer and binds
   our nonce, a session key, our digest, the advertised audit and capability
   keys, and the pinned TLS key.

Until that succeeds every call raises :class:`NotVerified`. Verification goes
stale, and is redone before the next call, when the server's session id
changes or the token expires. Layer-2 credentials are sealed only to the
``session_pub`` taken from the *signed* claims.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from app.agent.checks import check_status, refuse
from app.agent.delegation import CapabilityNotAttested, MintedCapability, MintRefused, minted_from, presented_capability
from app.agent.channel import AttestedChannel, attest_channel
from app.agent.errors import ChannelNotAttested, CredentialRefused, NotVerified, ToolNotAttested, ToolsChanged
from app.agent.report import VerificationReport, transport_warnings
from app.agent.trust import TrustPolicy
from app.wire.runtime_data import b64url, tools_digest
from app.wire.session_seal import seal_to_session
from app.wire.credentials import DEFAULT_CREDENTIAL_TTL_S, credential_payload
from app.wire.capability_token import is_capability
from app.urls import is_loopback_host

ATTESTATION_TOOL = "attestation_status"
CREDENTIALS_TOOL = "provide_session_credentials"
MINT_TOOL = "mint_capability"
NONCE_BYTES = 32
SESSION_ID_HEADER = "mcp-session-id"
MAX_ERROR_CHARS = 300
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class _Verified:
    session_id: str | None
    session_pub: str
    tools_digest: str
    tool_names: frozenset[str]
    expires_at: float
    capability_pub: str | None = None


def _text_of(result: types.CallToolResult) -> str:
    text = " ".join(part.text for part in result.content if getattr(part, "text", None))
    return " ".join(text.split())[:MAX_ERROR_CHARS]


class AttestedSession:
    """Connect, verify the server's attestation, then expose ``call_tool`` on the same MCP session.

    Args:
        url: The server's streamable-HTTP MCP URL (``.../mcp``).
        trust: Expected hostdata and trusted issuer (:class:`TrustPolicy`).
        headers: Extra HTTP headers; never ``Authorization`` (use ``bearer_token``).
        bearer_token: The server's inbound-auth token; sent only on the attested, pinned channel. A
            delegated capability (``biscuit~...``) is sent only once it chains to the capability key
            the channel's attestation binds.
        channel: An already attested channel to reuse (default: attest one while entering).
        verify_on_enter: Verify while entering (default); if False, call :meth:`verify` yourself.
        clock: Wall-clock seconds (injectable to test expiry).
        timeout_s: HTTP timeout.
        session_options: Passed to ``ClientSession`` (e.g. ``elicitation_callback``).

    Example:
        >>> async with AttestedSession(url, trust=TrustPolicy.maa(maa_host, hostdata)) as session:  # doctest: +SKIP
        ...     await session.provide_credentials("github_token", user_token)
        ...     result = await session.call_tool("github_search_issues", {"query": "is:open"})
    """

    def __init__(self, url: str, *, trust: TrustPolicy, headers: Mapping[str, str] | None = None,
                 bearer_token: str | None = None, channel: AttestedChannel | None = None,
                 verify_on_enter: bool = True, clock: Callable[[], float] = time.time,
                 timeout_s: float = DEFAULT_TIMEOUT_S, **session_options: Any) -> None:
        if any(name.lower() == "authorization" for name in headers or {}):
            raise ValueError("pass the token as bearer_token=, so it travels only on the attested channel")
        self.url = url
        self.trust = trust
        self._headers = dict(headers or {})
        self._bearer_token = bearer_token
        self.channel = channel
        self._verify_on_enter = verify_on_enter
        self._clock = clock
        self._timeout_s = timeout_s
        self._session_options = session_options
        self._stack: AsyncExitStack | None = None
        self._session: ClientSession | None = None
        self._init: types.InitializeResult | None = None
        self._latest_session_id: str | None = None
        self._verified: _Verified | None = None
        self._lock = asyncio.Lock()
        self.report: VerificationReport | None = None
        self.verifications = 0

    async def __aenter__(self) -> AttestedSession:
        stack = AsyncExitStack()
        try:
            http = await stack.enter_async_context(await self._http_client())
            read, write = await stack.enter_async_context(streamable_http_client(self.url, http_client=http))
            self._session = await stack.enter_async_context(ClientSession(read, write, **self._session_options))
            self._init = await self._session.initialize()
            self._stack = stack
            if self._verify_on_enter:
                await self.verify()
        except BaseException:
            self._stack = None
            await stack.aclose()
            raise
        return self

    async def _http_client(self) -> httpx2.AsyncClient:
        """A pinned client on an attested channel; plain HTTP only as a transport that can never verify."""
        options: dict[str, Any] = dict(headers=self._headers, timeout=self._timeout_s,
                                       event_hooks={"response": [self._saw_response]})
        parts = urlsplit(self.url)
        if parts.scheme != "https":
            if self._bearer_token is not None:
                # Fail closed: on plain HTTP nothing can be verified before the token would cross, so it
                # may go only to this machine (a local non-TEE server), and never as a capability.
                if not is_loopback_host(parts.hostname or ""):
                    raise ChannelNotAttested("plain HTTP to a remote host: the bearer token was not sent; "
                                             "use the server's https:// URL")
                if is_capability(self._bearer_token):
                    raise ChannelNotAttested("a capability is presented only on an attested https channel; "
                                             "it was not sent")
                options["headers"] = {**self._headers, "Authorization": f"Bearer {self._bearer_token}"}
            return httpx2.AsyncClient(**options)
        if self.channel is None:
            self.channel = await attest_channel(self.url, self.trust, timeout_s=self._timeout_s, clock=self._clock)
        # A capability must chain to the attested root before it leaves this process: the channel checks it.
        return self.channel.http_client(bearer=self._bearer_token, **options)

    async def __aexit__(self, *exc: object) -> None:
        self._verified = None
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _saw_response(self, response: httpx2.Response) -> None:
        session_id = response.headers.get(SESSION_ID_HEADER)
        if session_id:
            self._latest_session_id = session_id

    @property
    def verified(self) -> bool:
        """True while the last verification holds (same session, token not expired)."""
        return self._verified is not None and not self._stale(self._verified)

    def _stale(self, verified: _Verified) -> bool:
        return self._latest_session_id != verified.session_id or self._clock() >= verified.expires_at

    # -- verification -------------------------------------------------------------------------

    async def verify(self) -> VerificationReport:
        """Run every check on this session and return the report.

        Raises:
            VerificationFailed: a check failed (``report`` names it; :attr:`report` is the same).
            ChannelNotAttested: the answer binds another TLS key than the pinned one, or nothing is pinned.
        """
        if self._session is None:
            raise NotVerified("not connected: use `async with AttestedSession(...)`")
        async with self._lock:
            self._verified = None  # Fail closed: nothing is trusted while (re)verifying.
            self.verifications += 1
            report = VerificationReport(url=self.url, warnings=[*transport_warnings(self.url),
                                                                 *[w for w in (self.trust.warning,) if w]])
            if self.channel is not None:
                report.checks.extend(self.channel.report.checks)
            server = self._init.server_info if self._init else None
            report.passed("connect", f"{server.name} {server.version}" if server else "initialized")
            self.report = report
            self._verified = await self._run_checks(report)
        return report

    async def _list_all_tools(self) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def _run_checks(self, report: VerificationReport) -> _Verified:
        tools = await self._list_all_tools()
        digest = tools_digest(tools)
        report.tools = sorted(tool.name for tool in tools)
        nonce = b64url(secrets.token_bytes(NONCE_BYTES))
        result = await self._session.call_tool(ATTESTATION_TOOL, {"nonce": nonce})
        if result.is_error:
            refuse(report, ATTESTATION_TOOL, _text_of(result) or "the server refused the call")
        verified = await check_status(report, result.structured_content, nonce, trust=self.trust,
                                      pinned_spki=self.channel.pinned_spki if self.channel else None,
                                      tools_digest=digest, presented_capability=presented_capability(self._bearer_token),
                                      now=self._clock())
        return _Verified(session_id=self._latest_session_id, session_pub=verified.session_pub, tools_digest=digest,
                         tool_names=frozenset(report.tools), expires_at=float(verified.expires_at),
                         capability_pub=verified.capability_pub)

    # -- the verified surface -----------------------------------------------------------------

    async def _require_verified(self) -> _Verified:
        verified = self._verified
        if verified is None:
            raise NotVerified("the server's attestation has not been verified on this session")
        if self._stale(verified):
            await self.verify()
            verified = self._verified
        return verified

    async def _require_tool(self, name: str) -> None:
        if name not in (await self._require_verified()).tool_names:
            raise ToolNotAttested(f"tool {name[:64]!r} is not in the attested tool list")

    async def list_tools(self) -> list[types.Tool]:
        """List the tools again; raise :class:`ToolsChanged` (and drop trust) if they differ from the attested list."""
        verified = await self._require_verified()
        tools = await self._list_all_tools()
        if tools_digest(tools) != verified.tools_digest:
            self._verified = None
            raise ToolsChanged("tools/list changed since attestation: re-verify before trusting this server")
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, **options: Any) -> types.CallToolResult:
        """Call an attested tool on the verified session (re-verifying first if verification went stale)."""
        await self._require_tool(name)
        return await self._session.call_tool(name, arguments, **options)

    async def seal_credentials(self, kind: str, value: str, ttl_s: int = DEFAULT_CREDENTIAL_TTL_S) -> str:
        """Seal a user credential to the verified session key (see ``app.tools.session_credentials``).

        Raises:
            ValueError: the kind, value or TTL would be refused (the message names the field, not the value).
        """
        verified = await self._require_verified()
        return seal_to_session(verified.session_pub, credential_payload(kind, value, ttl_s))

    async def provide_sealed(self, sealed: str) -> dict[str, Any]:
        """Hand a sealed credential to the server; returns its kind and TTL, raises :class:`CredentialRefused`."""
        await self._require_tool(CREDENTIALS_TOOL)
        result = await self._session.call_tool(CREDENTIALS_TOOL, {"sealed": sealed})
        if result.is_error or not isinstance(result.structured_content, Mapping):
            raise CredentialRefused(_text_of(result) or "refused")
        return dict(result.structured_content)

    async def provide_credentials(self, kind: str, value: str, ttl_s: int = DEFAULT_CREDENTIAL_TTL_S) -> dict[str, Any]:
        """Seal a user credential to the attested session key and hand it to the server; returns kind and TTL."""
        return await self.provide_sealed(await self.seal_credentials(kind, value, ttl_s))

    async def mint_capability(self, tools: list[str] | None = None, ttl_s: int | None = None) -> MintedCapability:
        """Exchange this session's bearer for a capability chained to the attested capability key."""
        verified = await self._require_verified()
        await self._require_tool(MINT_TOOL)
        if verified.capability_pub is None:
            raise CapabilityNotAttested("the attestation binds no capability key")
        arguments = {key: value for key, value in (("tools", tools), ("ttl_s", ttl_s)) if value is not None}
        result = await self._session.call_tool(MINT_TOOL, arguments)
        if result.is_error or not isinstance(result.structured_content, Mapping):
            raise MintRefused(_text_of(result) or "refused")
        return minted_from(result.structured_content, verified.capability_pub)
