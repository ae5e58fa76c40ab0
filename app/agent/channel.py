"""`attest_channel`: verify the server on its pre-auth route and pin its TLS key, before any credential is sent.

Threat model: the host owns the network in front of a confidential group. It
can terminate TLS with its own key, or relay the attestation of the real
server while it reads and injects traffic. So the order is fixed:

1. open TLS without CA validation, capturing the peer's key (``ChannelPin``);
2. ``GET /.well-known/mcp-attestation?nonce=<fresh>`` on that client;
3. verify the MAA token as everywhere else: trusted issuer keys, hostdata, our
   nonce, report data over the runtime JSON, lifetime;
4. check that the signed ``tls_spki_sha256`` is the key *this* connection
   presented (:class:`ChannelNotAttested` otherwise);
5. only then may a bearer token travel, and only on clients that enforce the
   pin inside every handshake (:meth:`AttestedChannel.http_client`,
   :meth:`AttestedChannel.httpx_client_factory`); a delegated capability only
   once it chains to the ``capability_pub`` the attestation binds, so a
   capability minted by another server is never handed to this one (which
   could replay it there).

A refused channel has carried a nonce and nothing else. The pin lives for the
process: a restarted server has a new key, every new connection to it is
refused in the handshake, and only a fresh :func:`attest_channel` trusts it.

Example (the official client)::

    channel = await attest_channel("https://mcp.example.net/mcp", trust)
    async with channel.http_client(bearer=token) as http, \\
            streamable_http_client(channel.url, http_client=http) as (read, write), \\
            ClientSession(read, write) as session:
        await session.initialize()

Example (FastMCP)::

    transport = StreamableHttpTransport(channel.url, httpx_client_factory=channel.httpx_client_factory(bearer=token))
    async with fastmcp.Client(transport) as client:
        await client.call_tool("attestation_status", {})
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx2

from app.agent.checks import CHANNEL_CHECK, check_status, refuse, verify_token
from app.agent.delegation import chain_to, presented_capability
from app.agent.errors import ChannelNotAttested
from app.agent.pinning import ChannelPin, PinnedBearer, pin_refusal, pinned_async_client
from app.agent.report import VerificationReport
from app.agent.trust import TrustPolicy
from app.wire.runtime_data import b64url, tools_digest
from app.wire.tls_binding import ATTESTATION_ROUTE, CHANNEL_META_KEY, TLS_SPKI_FIELD

NONCE_BYTES = 32
DEFAULT_TIMEOUT_S = 30.0
MAX_EVIDENCE_BYTES = 64 * 1024
RESTART_NOTE = "pinned for this process; a server restart means a new key and a new verification"


@dataclass(frozen=True)
class AttestedChannel:
    """A verified server whose TLS key is pinned: hand out clients that can reach only that key.

    Args:
        url: The MCP URL (``https://…/mcp``).
        trust: The issuer and hostdata the channel was verified against.
        pin: The confirmed pin.
        runtime: The verified runtime data (signed ``x-ms-runtime``).
        claims: The verified token claims.
        report: The checks that ran.
    """

    url: str
    trust: TrustPolicy
    pin: ChannelPin
    runtime: Mapping[str, Any]
    claims: Mapping[str, Any]
    report: VerificationReport

    @property
    def spki_sha256(self) -> str:
        return str(self.pin.spki_sha256)

    def http_client(self, *, bearer: str | None = None, **client_options: Any) -> httpx2.AsyncClient:
        """A pinned ``httpx2.AsyncClient`` for ``streamable_http_client(url, http_client=...)``.

        ``bearer`` goes out only through :class:`PinnedBearer`, which refuses while the pin is unconfirmed.

        Raises:
            CapabilityNotAttested: ``bearer`` is a capability that does not chain to the attested
                ``capability_pub``; no client was made, so nothing was sent.
            ValueError: an ``Authorization`` header was passed in ``headers`` (any form), an ``auth=``, or
                an option that would replace the pinned transport (see ``PinnedAsyncClient``). The client
                also refuses a request carrying a credential other than its bearer.
        """
        client_options.setdefault("timeout", httpx2.Timeout(DEFAULT_TIMEOUT_S, read=300.0))
        return pinned_async_client(self.pin, bearer=self._pinned_bearer(bearer) if bearer is not None else None,
                                   **client_options)

    def _pinned_bearer(self, bearer: str) -> PinnedBearer:
        """The one way a bearer joins a client on this channel."""
        capability = presented_capability(bearer)
        if capability is not None:
            # Fail closed before the capability leaves this process: one minted by another server, sent here,
            # could be replayed by this server to the one that minted it.
            chain_to(capability, self.runtime.get("capability_pub"))
        return PinnedBearer(self.pin, bearer)

    def httpx_client_factory(self, *, bearer: str | None = None) -> Callable[..., httpx2.AsyncClient]:
        """A factory for FastMCP's ``StreamableHttpTransport(httpx_client_factory=...)``: every client is pinned.

        Raises:
            CapabilityNotAttested: as :meth:`http_client`, here already rather than inside the transport.
        """
        if bearer is not None:
            self._pinned_bearer(bearer)

        def factory(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                    auth: httpx2.Auth | None = None, **options: Any) -> httpx2.AsyncClient:
            # Fail closed: an auth handed in by the transport would bypass the pin gate, so only ours is used.
            options.pop("follow_redirects", None)
            return self.http_client(bearer=bearer, headers=headers, **({"timeout": timeout} if timeout else {}))

        return factory

    @property
    def pinned_spki(self) -> str | None:
        """The pinned key's hash once a verified token confirmed it; None before."""
        return self.pin.spki_sha256 if self.pin.confirmed else None

    async def verify_status(self, status: Mapping[str, Any], nonce: str, *, tools: Iterable[Any] | None = None,
                            bearer: str | None = None) -> SessionBinding:
        """Check an ``attestation_status(nonce)`` answer received on this channel; return what it binds.

        The MCP-level counterpart of the route check, for clients that drive MCP themselves (FastMCP's
        ``Client``, the official client on 2026-07-28). It runs the same rules as :class:`AttestedSession`
        (:func:`app.agent.checks.check_status`): the token must verify against *our* trust and bind our nonce,
        the session key, audit key and capability key the answer advertises, the pinned TLS key and, with
        ``tools``, the tool list this client received. Pass ``tools``: without it the tool list is not bound.
        Pass ``bearer`` too (the one given to :meth:`http_client`): a capability must chain to the capability
        key the answer binds, as :class:`AttestedSession` checks on its own answers.

        Raises:
            VerificationFailed: a check failed (``report`` names it).
            ChannelNotAttested: the token binds another TLS key than the pinned one.
        """
        report = VerificationReport(url=self.url, warnings=[w for w in (self.trust.warning,) if w])
        verified = await check_status(report, status, nonce, trust=self.trust, pinned_spki=self.pinned_spki,
                                      tools_digest=tools_digest(tools) if tools is not None else None,
                                      presented_capability=presented_capability(bearer))
        return SessionBinding(session_pub=verified.session_pub, channel=status.get("channel"))


@dataclass(frozen=True)
class SessionBinding:
    """What a verified ``attestation_status`` binds: the key to seal credentials to, and (2026-07-28) the channel.

    Args:
        session_pub: The X25519 key the token binds (seal layer-2 credentials to it).
        channel: The channel handle to name in ``_meta`` on MCP 2026-07-28 (None on session connections).
    """

    session_pub: str
    channel: str | None

    @property
    def meta(self) -> dict[str, str]:
        """The ``_meta`` for each later request on 2026-07-28 (empty on session connections)."""
        return {CHANNEL_META_KEY: self.channel} if self.channel else {}


def attestation_url(mcp_url: str, nonce: str) -> str:
    """The pre-auth route on the MCP URL's origin."""
    parts = urlsplit(mcp_url)
    return urlunsplit((parts.scheme, parts.netloc, ATTESTATION_ROUTE, f"nonce={nonce}", ""))


async def attest_channel(url: str, trust: TrustPolicy, *, report: VerificationReport | None = None,
                         timeout_s: float = DEFAULT_TIMEOUT_S,
                         clock: Callable[[], float] | None = None) -> AttestedChannel:
    """Verify the server at ``url`` over its pre-auth route and pin the TLS key this connection presented.

    Raises:
        ChannelNotAttested: plain HTTP, user:password@ in the URL, a refused handshake, or a token binding
            another key (nothing was sent).
        VerificationFailed: the token itself failed a check (the report names it).
    """
    report = report or VerificationReport(url=url, warnings=[w for w in (trust.warning,) if w])
    parts = urlsplit(url)
    if parts.scheme != "https":
        refuse(report, CHANNEL_CHECK, "plain HTTP: nothing can bind this connection to the TEE; "
                                      "use the server's https:// URL")
    if "@" in parts.netloc:
        refuse(report, CHANNEL_CHECK, "the URL carries user:password@, a credential that would go out before "
                                      "any check; pass credentials as bearer=")
    pin = ChannelPin()  # capture mode: the key of the first handshake, every later one must match
    nonce = b64url(secrets.token_bytes(NONCE_BYTES))
    try:
        async with pinned_async_client(pin, timeout=timeout_s) as http:
            async with http.stream("GET", attestation_url(url, nonce)) as response:
                status, body = response.status_code, await _read_capped(response, MAX_EVIDENCE_BYTES)
    except httpx2.HTTPError as exc:
        if pin_refusal(exc) is not None:
            refuse(report, CHANNEL_CHECK, f"the server changed its TLS key during verification ({exc})")
        refuse(report, "connect", f"could not reach the attestation route ({type(exc).__name__})")
    evidence = _evidence(report, status, body)
    claims = await asyncio.to_thread(verify_token, report, trust, evidence["token"], nonce=nonce,
                                     runtime=evidence["runtime"], now=clock() if clock else None)
    try:
        pin.confirm(claims["x-ms-runtime"].get(TLS_SPKI_FIELD))
    except ChannelNotAttested as exc:
        refuse(report, CHANNEL_CHECK, str(exc))
    report.passed(CHANNEL_CHECK, f"TLS key sha256 {pin.spki_sha256[:16]}… is the attested key ({RESTART_NOTE})")
    return AttestedChannel(url, trust, pin, claims["x-ms-runtime"], claims, report)


async def _read_capped(response: httpx2.Response, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes: an unverified server cannot make us buffer more."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _evidence(report: VerificationReport, status: int, raw: bytes | None) -> dict[str, Any]:
    body: Any = None
    if status == 200 and raw is not None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    if not (isinstance(body, dict) and isinstance(body.get("token"), str) and isinstance(body.get("runtime"), dict)):
        refuse(report, "attestation_route", f"no attestation evidence (HTTP {status})")
    report.passed("attestation_route", "evidence received before any credential was sent")
    return body
