"""SPKI pinning for the agent's TLS: a handshake to a key other than the pinned one fails before any byte of HTTP.

Threat model: the server's certificate is self-signed by a key born in its
TEE, so CA validation proves nothing and is off; what proves the peer is the
attested code is that the SHA-256 of the certificate's SubjectPublicKeyInfo
equals the ``tls_spki_sha256`` a verified MAA token binds. The check runs
inside the handshake (``do_handshake`` of the context's ``SSLObject`` and
``SSLSocket`` classes), so a refused peer never receives a request line, a
header or a bearer token: a TLS-terminating proxy, a restarted server with a
new key and a server whose token names another key are all refused there.

Bootstrap: before verification there is nothing to pin yet. A
:class:`ChannelPin` made with no expected hash *captures* the key of the first
handshake and refuses every later handshake to another key, so every response
on that client, including the attestation response, came over the captured
key. The pin is *confirmed* only when the verified token binds that key
(:meth:`ChannelPin.confirm`); until then it stays unconfirmed, and callers
send no credential (see :class:`PinnedBearer`). A pinned client refuses a request that carries a
credential of its own (:class:`PinnedAsyncClient`), so the bearer is the only way one goes out.
"""

from __future__ import annotations

import hmac
import ssl
import threading
from typing import Any, Generator, NoReturn

import httpx2

from app.agent.errors import ChannelNotAttested
from app.wire.tls_binding import is_spki_hash, spki_sha256


class ChannelPinMismatch(ssl.SSLCertVerificationError):
    """The peer's TLS key is not the pinned one; raised inside the handshake."""


class ChannelPin:
    """The one TLS public key (SPKI SHA-256) a client's connections may reach.

    Args:
        expected: The hex hash to require; None captures the first handshake's key.

    Example:
        >>> pin = ChannelPin()  # capture mode                       # doctest: +SKIP
        >>> async with pinned_async_client(pin) as http:               # doctest: +SKIP
        ...     evidence = (await http.get(attestation_url)).json()
        ...     pin.confirm(verified_runtime["tls_spki_sha256"])     # only now may credentials travel
    """

    def __init__(self, expected: str | None = None) -> None:
        if expected is not None and not is_spki_hash(expected):
            raise ValueError("a pin is 64 lowercase hex characters (SHA-256 of the SubjectPublicKeyInfo)")
        self._spki = expected
        self._confirmed = expected is not None
        self._lock = threading.Lock()
        self.refused: list[str] = []  # SPKI hashes of refused handshakes, for the report

    @property
    def spki_sha256(self) -> str | None:
        """The pinned (or captured, still unconfirmed) hash; None before the first handshake in capture mode."""
        return self._spki

    @property
    def confirmed(self) -> bool:
        """True once a verified attestation bound the pinned key."""
        return self._confirmed

    def check_peer(self, certificate_der: bytes | None) -> None:
        """Called by the handshake: capture or compare; raise :class:`ChannelPinMismatch` on any other key."""
        try:
            observed = spki_sha256(certificate_der) if certificate_der else None
        except ValueError:
            observed = None
        with self._lock:
            if observed is not None and self._spki is None:
                self._spki = observed
                return
            if observed is not None and hmac.compare_digest(observed, self._spki):
                return
            # Fail closed: no certificate, an unparsable one or another key.
            self.refused.append(observed or "none")
            pinned = self._spki
        raise ChannelPinMismatch(f"TLS key {str(observed)[:16]}… is not the pinned attested key {pinned[:16]}…"
                                 if observed and pinned else "the peer presented no usable TLS certificate")

    def confirm(self, attested_spki: object) -> None:
        """Confirm the captured key against the hash a *verified* token binds; raise :class:`ChannelNotAttested`."""
        with self._lock:
            if not is_spki_hash(attested_spki):
                raise ChannelNotAttested("the attestation binds no TLS key (tls_spki_sha256): "
                                         "this server cannot prove the connection ends in its TEE")
            if self._spki is None or not hmac.compare_digest(self._spki, attested_spki):
                raise ChannelNotAttested(f"the TLS key on this connection ({str(self._spki)[:16]}…) is not the key "
                                         f"the attestation binds ({attested_spki[:16]}…): something terminates "
                                         "TLS between you and the TEE")
            self._confirmed = True

    def ssl_context(self) -> ssl.SSLContext:
        """A client context without CA or hostname validation whose handshakes enforce this pin."""
        context = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # Deliberate: the pin, not a CA, authenticates the peer.
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.channel_pin = self
        return context

    def __repr__(self) -> str:
        state = "confirmed" if self._confirmed else ("captured" if self._spki else "capturing")
        return f"ChannelPin({state}, spki_sha256={self._spki!r})"


class _PinnedSSLObject(ssl.SSLObject):
    """The non-blocking TLS object anyio (and so httpx2/httpx async) drives."""

    def do_handshake(self) -> None:
        super().do_handshake()  # SSLWantReadError propagates until the handshake is complete
        self.context.channel_pin.check_peer(self.getpeercert(binary_form=True))


class _PinnedSSLSocket(ssl.SSLSocket):
    """The blocking TLS socket synchronous clients use."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        self.context.channel_pin.check_peer(self.getpeercert(binary_form=True))


class _PinnedContext(ssl.SSLContext):
    sslobject_class = _PinnedSSLObject
    sslsocket_class = _PinnedSSLSocket
    channel_pin: ChannelPin


class PinnedBearer(httpx2.Auth):
    """Adds ``Authorization: Bearer`` only while the channel pin is confirmed; otherwise refuses the request.

    Args:
        pin: The channel pin that must be confirmed first.
        token: The bearer token.
    """

    def __init__(self, pin: ChannelPin, token: str) -> None:
        self.pin = pin
        self._token = token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if not self.pin.confirmed:
            # Fail closed: no verified binding, no credential on the wire.
            raise ChannelNotAttested("refusing to send the bearer token: the TLS channel is not attested yet")
        if request.url.scheme != "https":
            # Plain HTTP has no handshake, so the pin would never be checked.
            raise ChannelNotAttested("refusing to send the bearer token over plain HTTP: only the pinned TLS "
                                     "channel carries it")
        request.headers["Authorization"] = self._header()
        yield request

    def added(self, header: str) -> bool:
        """Whether ``header`` is the one this bearer adds (a same-origin redirect carries it over)."""
        return hmac.compare_digest(header.encode(), self._header().encode())

    def _header(self) -> str:
        return f"Bearer {self._token}"

    def __repr__(self) -> str:
        return "PinnedBearer(token=[REDACTED])"


# Options a caller may give a pinned client. Left out on purpose: `transport`, `mounts` and `verify`
# (httpx ignores the pinned context when given a transport, so the pin would never run), `auth`
# (only the channel's own PinnedBearer, passed as `bearer`), and request hooks (they run after the
# checks in `send` and could add a header). Proxies come from the environment (`trust_env`).
PINNED_CLIENT_OPTIONS = frozenset({
    "headers", "cookies", "params", "base_url", "timeout", "limits", "http2", "follow_redirects",
    "max_redirects", "trust_env", "default_encoding", "event_hooks",
})


class PinnedAsyncClient(httpx2.AsyncClient):
    """An ``httpx2.AsyncClient`` whose every connection enforces ``pin`` and whose only credential is ``bearer``.

    That bearer is the only way a credential goes out. Anything else would skip the pin check and,
    for a capability, the check that it chains to the attested key, so a request is refused before
    it is sent when it carries an ``Authorization`` header of its own, an ``auth=`` (``auth=None``,
    which sends nothing, is allowed), ``user:password@`` in its URL (httpx turns it into Basic
    auth), or when the client's ``auth`` is no longer its bearer. A same-origin redirect (the MCP SDK
    follows them itself) carries the bearer's own header over: it is dropped, and the bearer adds it
    again after its pin check.

    Raises:
        ValueError: an ``Authorization`` header or ``auth=`` among the options, an option outside
            ``PINNED_CLIENT_OPTIONS``, a request hook, or a bearer bound to another pin.
    """

    def __init__(self, pin: ChannelPin, *, bearer: PinnedBearer | None = None, **options: Any) -> None:
        # The credential forms first, by name: a header in any form (a dict or a list of pairs), or auth=.
        if "authorization" in httpx2.Headers(options.get("headers")):
            refuse_own_credential("an Authorization header")
        if "auth" in options:
            refuse_own_credential("auth=")
        unknown = sorted(set(options) - PINNED_CLIENT_OPTIONS)
        if unknown:
            raise ValueError(f"a pinned client does not take {', '.join(unknown)}: it could bypass the pin or "
                             "the credential checks")
        if (options.get("event_hooks") or {}).get("request"):
            raise ValueError("a pinned client takes response hooks only: a request hook runs after the "
                             "credential checks")
        if bearer is not None and bearer.pin is not pin:
            raise ValueError("the bearer is bound to another channel's pin")
        super().__init__(verify=pin.ssl_context(), auth=bearer, **options)
        self._bearer = bearer

    async def send(self, request: httpx2.Request, *, auth: Any = httpx2.USE_CLIENT_DEFAULT,
                   **options: Any) -> httpx2.Response:
        if self.auth is not self._bearer:
            refuse_own_credential("a client auth set after construction")
        if request.url.userinfo:
            refuse_own_credential("user:password@ in the URL")
        header = request.headers.get("authorization")
        if header is not None:
            if self._bearer is None or not self._bearer.added(header):
                refuse_own_credential("an Authorization header")
            del request.headers["authorization"]
        if auth is not httpx2.USE_CLIENT_DEFAULT and auth is not None:
            refuse_own_credential("auth=")
        return await super().send(request, auth=auth, **options)


def refuse_own_credential(form: str) -> NoReturn:
    """Refuse a credential given in ``form`` instead of as ``bearer=``, the one form the pin gate sees."""
    raise ValueError(f"pass the credential as bearer=, not as {form}: only then is it sent after the pin is confirmed")


def pinned_async_client(pin: ChannelPin, *, bearer: PinnedBearer | None = None,
                        **client_options: Any) -> PinnedAsyncClient:
    """A :class:`PinnedAsyncClient` on ``pin`` (see it for the options it takes and refuses)."""
    return PinnedAsyncClient(pin, bearer=bearer, **client_options)


def pin_refusal(exc: BaseException) -> ChannelPinMismatch | None:
    """The pin refusal inside ``exc`` (httpx wraps it in a ConnectError, anyio task groups in a group), if any."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ChannelPinMismatch):
            return current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += list(getattr(current, "exceptions", ()))
    return None
