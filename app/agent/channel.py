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
   :meth:`AttestedChannel.httpx_client_factory`).

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
from typing import Any, Callable, Iterable, Mapping, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx2
import jwt

from app.agent.errors import ChannelNotAttested, VerificationFailed
from app.agent.pinning import ChannelPin, PinnedBearer, pin_refusal, pinned_async_client
from app.agent.report import VerificationReport
from app.agent.trust import TrustPolicy
from app.attestation.errors import UntrustedIssuerUrl
from app.attestation.maa_keys import require_trusted_url
from app.attestation.verifier import check_maa_token, verify_maa_token
from app.urls import same_url
from app.wire.runtime_data import b64url, tools_digest
from app.wire.tls_binding import ATTESTATION_ROUTE, CHANNEL_META_KEY, TLS_SPKI_FIELD

NONCE_BYTES = 32
DEFAULT_TIMEOUT_S = 30.0
MAX_EVIDENCE_BYTES = 64 * 1024
CHANNEL_CHECK = "tls_channel"
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
        """
        client_options.setdefault("timeout", httpx2.Timeout(DEFAULT_TIMEOUT_S, read=300.0))
        if bearer is not None:
            client_options["auth"] = PinnedBearer(self.pin, bearer)
        return pinned_async_client(self.pin, **client_options)

    def httpx_client_factory(self, *, bearer: str | None = None) -> Callable[..., httpx2.AsyncClient]:
        """A factory for FastMCP's ``StreamableHttpTransport(httpx_client_factory=...)``: every client is pinned."""

        def factory(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                    auth: httpx2.Auth | None = None, **options: Any) -> httpx2.AsyncClient:
            # Fail closed: an auth handed in by the transport would bypass the pin gate, so only ours is used.
            options.pop("follow_redirects", None)
            return self.http_client(bearer=bearer, headers=headers, **({"timeout": timeout} if timeout else {}))

        return factory

    async def verify_status(self, status: Mapping[str, Any], nonce: str, *,
                            tools: Iterable[Any] | None = None) -> SessionBinding:
        """Check an ``attestation_status(nonce)`` answer received on this channel; return what it binds.

        The MCP-level counterpart of the route check, for clients that drive MCP themselves (FastMCP's
        ``Client``, the official client on 2026-07-28): the token must verify against *our* trust, bind our
        nonce, the pinned TLS key, the session key the answer advertises and, with ``tools``, our tool list.

        Raises:
            VerificationFailed: a check failed (``report`` names it).
            ChannelNotAttested: the token binds another TLS key than the pinned one.
        """
        report = VerificationReport(url=self.url)
        attestation = status.get("attestation") if status.get("running_in_tee") is True else None
        if not isinstance(attestation, Mapping) or not isinstance(attestation.get("token"), str):
            report.failed("tee_mode", "the answer carries no TEE evidence")
            raise VerificationFailed(report)
        claims = await asyncio.to_thread(_verify, report, self.trust, attestation["token"], nonce,
                                         attestation.get("runtime") or {}, None)
        signed = claims["x-ms-runtime"]
        if signed.get(TLS_SPKI_FIELD) != self.spki_sha256:
            _fail(report, "this answer's attestation binds another TLS key than the pinned one")
        if tools is not None and signed.get("tools_digest") != tools_digest(tools):
            report.failed("tools_digest", "the attested tool list differs from the one this client received")
            raise VerificationFailed(report)
        if not isinstance(signed.get("session_pub"), str):
            report.failed("session_pub", "the token binds no session key")
            raise VerificationFailed(report)
        return SessionBinding(session_pub=signed["session_pub"], channel=status.get("channel"))


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
        ChannelNotAttested: plain HTTP, a refused handshake, or a token binding another key (nothing was sent).
        VerificationFailed: the token itself failed a check (the report names it).
    """
    report = report or VerificationReport(url=url, warnings=[w for w in (trust.warning,) if w])
    if urlsplit(url).scheme != "https":
        _fail(report, "plain HTTP: nothing can bind this connection to the TEE; use the server's https:// URL")
    pin = ChannelPin()  # capture mode: the key of the first handshake, every later one must match
    nonce = b64url(secrets.token_bytes(NONCE_BYTES))
    try:
        async with pinned_async_client(pin, timeout=timeout_s) as http:
            async with http.stream("GET", attestation_url(url, nonce)) as response:
                status, body = response.status_code, await _read_capped(response, MAX_EVIDENCE_BYTES)
    except httpx2.HTTPError as exc:
        if pin_refusal(exc) is not None:
            _fail(report, f"the server changed its TLS key during verification ({exc})")
        report.failed("connect", f"could not reach the attestation route ({type(exc).__name__})")
        raise VerificationFailed(report) from None
    evidence = _evidence(report, status, body)
    token, runtime = evidence["token"], evidence["runtime"]
    claims = await asyncio.to_thread(_verify, report, trust, token, nonce, runtime, clock)
    report.hostdata, report.issuer, report.expires_at = (claims.get("x-ms-sevsnpvm-hostdata"), claims.get("iss"),
                                                         int(claims["exp"]))
    try:
        pin.confirm(claims["x-ms-runtime"].get(TLS_SPKI_FIELD))
    except ChannelNotAttested as exc:
        _fail(report, str(exc))
    report.passed(CHANNEL_CHECK, f"TLS key sha256 {pin.spki_sha256[:16]}… is the attested key ({RESTART_NOTE})")
    return AttestedChannel(url, trust, pin, claims["x-ms-runtime"], claims, report)


def _fail(report: VerificationReport, detail: str) -> NoReturn:
    report.failed(CHANNEL_CHECK, f"ChannelNotAttested: {detail}")
    raise ChannelNotAttested(detail, report)


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
        report.failed("attestation_route", f"no attestation evidence (HTTP {status})")
        raise VerificationFailed(report)
    report.passed("attestation_route", "evidence received before any credential was sent")
    return body


def _verify(report: VerificationReport, trust: TrustPolicy, token: str, nonce: str, runtime: Mapping[str, Any],
            clock: Callable[[], float] | None) -> dict[str, Any]:
    """Issuer, signature, hostdata, nonce, lifetime, runtime JSON and report data; every check lands in ``report``."""
    if not check_trusted_issuer(report, trust, token):
        raise VerificationFailed(report)
    options = dict(issuer=trust.issuer, expected_hostdata=trust.expected_hostdata, nonce=nonce,
                   expected_runtime=runtime, leeway=trust.leeway_s, now=clock() if clock else None)
    results = [result for result in check_maa_token(token, **options) if not result.skipped]
    for result in results:
        (report.passed if result.ok else report.failed)(result.check, result.detail)
    if not results or not all(result.ok for result in results):
        raise VerificationFailed(report)
    return verify_maa_token(token, **options)


def check_trusted_issuer(report: VerificationReport, trust: TrustPolicy, token: str) -> bool:
    """Is the token from the issuer *we* trust? Explains an emulator token met without ``--trust-dev-issuer``."""
    issuer = _unverified_issuer(token)
    if issuer is not None and same_url(issuer, trust.issuer):
        report.passed("trusted_issuer", trust.issuer + (" (development issuer, NOT A TEE)" if trust.dev_issuer else ""))
        return True
    if issuer is not None and _is_dev_issuer(issuer) and not trust.dev_issuer:
        report.failed("trusted_issuer", f"the token comes from development issuer {issuer} (the emulator, NOT A TEE); "
                                        "refusing it without --trust-dev-issuer")
    else:
        report.failed("trusted_issuer", f"the token's issuer {str(issuer)[:100]} is not the trusted {trust.issuer}")
    return False


def _unverified_issuer(token: str) -> str | None:
    """The token's ``iss`` before verification: only to explain a refusal, never to decide trust."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return issuer if isinstance(issuer, str) else None


def _is_dev_issuer(url: str) -> bool:
    """An http issuer that the URL rules accept can only be a loopback one: the emulator."""
    try:
        require_trusted_url(url, "issuer")
    except UntrustedIssuerUrl:
        return False
    return urlsplit(url).scheme == "http"
