"""Inbound OAuth 2.1 resource-server auth: verify bearer JWTs in front of `/mcp` (RFC 6750/8707/9728).

Threat model: anyone who reaches the port may send a forged, replayed, expired or mis-targeted
token. We accept only RS256/ES256 signatures from keys in the configured issuer's JWKS (so `none`
and HS/RS key confusion are impossible), require `iss`, `aud` (this server's canonical URL),
`exp` and `sub`, and allow a small clock leeway. An unknown `kid` triggers a JWKS refresh at most
once per interval, so junk tokens cannot turn us into a JWKS-fetching amplifier. Tokens are taken
only from the Authorization header: a query-string token is refused (it leaks into logs and
history). The header is stripped before the MCP app sees the request, so no tool or upstream
client can forward the caller's token. A bearer starting with ``biscuit~`` is a delegated
capability, never a JWT; it is accepted only when a capability verifier is configured, verified
on every request (a revocation takes effect at once), and yields a principal carrying its chain.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import jwt
from fastmcp.server.auth import AccessToken
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.principal import Principal, attach_principal
from app.auth.settings import METADATA_PATH, AuthSettings
from app.errors import CapabilityDenied
from app.jwks import JwksCache, KeyUnavailable
from app.wire.tls_binding import ATTESTATION_ROUTE
from app.wire.capability_token import is_capability

logger = logging.getLogger(__name__)

# The key type each algorithm must be verified with; an RSA key is never an HMAC secret.
KEY_TYPE_FOR_ALGORITHM = {"RS256": "RSA", "ES256": "EC"}
REQUIRED_CLAIMS = ("iss", "aud", "exp", "sub")
MAX_SUBJECT_CHARS = 256
# Unicode categories refused in a subject: controls, format characters (bidi overrides, zero-width),
# surrogates, and line and paragraph separators.
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Query parameters that would carry a token (RFC 6750 §2.3); refused, never read.
QUERY_TOKEN_PARAMS = frozenset({"access_token"})
PUBLIC_PATHS = frozenset({"/healthz", ATTESTATION_ROUTE})  # the route attests before any credential exists
# Verified tokens are remembered briefly (keyed by their hash, never the token) because parsing
# and checking a JWT costs more than the rest of the capability stack together.
VERIFIED_CACHE_SIZE = 1024
VERIFIED_CACHE_TTL_S = 60.0


@dataclass(frozen=True)
class HttpRefusal:
    """A request refused before MCP saw it (401/403/400 here, 429 by session admission); carries no token."""

    status: int
    reason: str
    path: str
    principal: str | None = None
    layer: str = "auth"


RefusalHook = Callable[[HttpRefusal], None]


class AuthError(Exception):
    """A token was refused; the message is safe to return to the caller."""


def _reject(reason: str) -> NoReturn:
    raise AuthError(reason)


def parse_oauth_jwks(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Map `kid` to its JWK; the key object is built on first use (`BearerTokenVerifier._key`)."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        return {}
    return {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}


def _printable_subject(subject: Any) -> bool:
    """A `sub` this server can key state on: 1-256 characters, none a control, format, surrogate or separator one."""
    return (isinstance(subject, str) and 0 < len(subject) <= MAX_SUBJECT_CHARS
            and not any(unicodedata.category(char) in UNPRINTABLE_CATEGORIES for char in subject))


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp"))
    if raw is None:
        # An app-only token (client credentials) has no delegated scopes; Entra puts the API's app
        # roles in `roles` instead. A token that has scopes is never widened by its subject's roles.
        raw = claims.get("roles", "")
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(item for item in items if isinstance(item, str))


class BearerTokenVerifier:
    """Turns a bearer token into a `Principal`, or raises `AuthError`.

    Args:
        settings: Issuer, audience and algorithms.
        jwks: Key cache (defaults to one for `settings.jwks_url`).
        capabilities: Turns a presented capability token into a principal (`DelegationService.principal`);
            without it, capability tokens are refused.
    """

    def __init__(self, settings: AuthSettings, jwks: JwksCache | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 capabilities: Callable[[str], Principal] | None = None) -> None:
        self.settings = settings
        self._capabilities = capabilities
        self.jwks = jwks or JwksCache(parse_oauth_jwks, allow_file=True)
        # Parsed key objects per (kid, alg): building one from a JWK costs more than a signature check.
        self._parsed: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}
        self._wall_clock = wall_clock
        # token hash -> (principal, exp, remember-until), all wall-clock seconds
        self._verified: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """A principal for a valid token; a recently verified token is checked only for expiry."""
        if is_capability(token):
            return self._capability_principal(token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._wall_clock()
        cached = self._verified.get(digest)
        if cached is not None:
            principal, expires, remember_until = cached
            if now > expires + self.settings.leeway:
                del self._verified[digest]
                _reject("token expired")
            if now < remember_until:
                return principal
            del self._verified[digest]
        principal, expires = await self._verify_fully(token)
        self._verified[digest] = (principal, expires, now + VERIFIED_CACHE_TTL_S)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _capability_principal(self, token: str) -> Principal:
        if self._capabilities is None:
            _reject("capability tokens are not accepted by this server")
        try:
            return self._capabilities(token)
        except CapabilityDenied as refused:
            _reject(str(refused))

    async def _key(self, kid: str, algorithm: str) -> Any:
        """The verification key for `kid`; its type and declared algorithm must match the token's."""
        try:
            jwk = await self.jwks.key_async(self.settings.jwks_url, kid)
        except KeyUnavailable:
            _reject("unknown signing key")
        cached = self._parsed.get((kid, algorithm))
        if cached is not None and cached[0] is jwk:
            return cached[1]
        if jwk.get("kty") != KEY_TYPE_FOR_ALGORITHM[algorithm] or jwk.get("alg", algorithm) != algorithm:
            _reject("signing key does not match the token algorithm")
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm).key
        except jwt.PyJWKError:
            _reject("signing key is unusable")
        self._parsed[(kid, algorithm)] = (jwk, key)
        return key

    async def _verify_fully(self, token: str) -> tuple[Principal, float]:
        """Verify signature, algorithm, issuer, audience and time claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            _reject("malformed token")
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self.settings.algorithms:
            _reject("token algorithm not allowed")
        if not isinstance(kid, str):
            _reject("token has no key id")
        key = await self._key(kid, algorithm)
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=self.settings.audience,
                                issuer=self.settings.issuer, leeway=self.settings.leeway,
                                options={"require": list(REQUIRED_CLAIMS)})
        except jwt.ExpiredSignatureError:
            _reject("token expired")
        except jwt.InvalidAudienceError:
            _reject("token audience is not this server")
        except jwt.InvalidIssuerError:
            _reject("token issuer not trusted")
        except jwt.InvalidTokenError:
            _reject("invalid token")
        subject = claims["sub"]
        if not _printable_subject(subject):
            # The subject keys sessions, quotas and audit records; a control character could
            # pose as the registry's owner separator or split a log line.
            _reject("token subject must be 1-256 printable characters")
        jti = claims.get("jti")
        principal = Principal(subject=subject, scopes=_scopes(claims),
                              token_id=jti if isinstance(jti, str) else None, expires_at=float(claims["exp"]))
        return principal, float(claims["exp"])


class BearerAuthApp:
    """ASGI wrapper: metadata endpoint, public health check, bearer auth for everything else.

    Args:
        app: The MCP Starlette app (`server.http_app(path="/mcp")`).
        verifier: Verifies bearer tokens.
    """

    def __init__(self, app: ASGIApp, verifier: BearerTokenVerifier, on_refusal: RefusalHook | None = None) -> None:
        # The SDK's own context layer publishes `scope["user"]` as `auth_context_var`, so every SDK
        # feature that keys on the caller (sealed requestState, session ownership) sees the principal.
        self._app = AuthContextMiddleware(app)
        self._verifier = verifier
        self._settings = verifier.settings
        self._on_refusal = on_refusal
        self._users: OrderedDict[tuple[str, str, frozenset[str]], AuthenticatedUser] = OrderedDict()

    def _challenge(self, error: str | None = None, description: str | None = None) -> str:
        parts = [f'resource_metadata="{self._settings.metadata_url}"',
                 f'scope="{" ".join(sorted(self._settings.scopes_supported))}"']
        if error:
            parts.insert(0, f'error="{error}", error_description="{description}"')
        return "Bearer " + ", ".join(parts)

    def _deny(self, scope: Scope, status: int, error: str | None, description: str,
              principal: Principal | None = None) -> Response:
        """The one way this layer refuses: log at INFO, audit, answer (never echoing the token)."""
        path = scope.get("path", "")
        logger.info("refused %s %s: %d %s", scope.get("method", ""), path[:200], status, description)
        if self._on_refusal is not None:
            self._on_refusal(HttpRefusal(status, description, path, principal.subject if principal else None))
        body = {"error": error or "unauthorized", "error_description": description}
        if status == 400:
            return JSONResponse(body, status_code=status)
        return JSONResponse(body, status_code=status, headers={"WWW-Authenticate": self._challenge(error, description)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._app(scope, receive, send)
            return
        if scope["type"] != "http":
            # Fail closed: no websocket or other transport bypasses the bearer check.
            await send({"type": "websocket.close", "code": 1008})
            return
        response = await self._screen(scope)
        if response is not None:
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _screen(self, scope: Scope) -> Response | None:
        """A refusal response, or None after attaching the verified principal to `scope`."""
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if any(name.lower() in QUERY_TOKEN_PARAMS for name, _ in query):
            return self._deny(scope, 400, "invalid_request", "tokens are accepted only in the Authorization header")
        path = scope.get("path", "")
        if path == METADATA_PATH or path.startswith(METADATA_PATH + "/"):
            return JSONResponse(self._settings.metadata())
        if path in PUBLIC_PATHS:
            return None
        headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() != b"authorization"]
        credentials = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
        if len(credentials) != 1 or not credentials[0][:7].lower() == b"bearer ":
            return self._deny(scope, 401, None, "missing token: send it in the Authorization header")
        try:
            principal = await self._verifier.verify(credentials[0][7:].decode("latin-1").strip())
        except AuthError as refused:
            return self._deny(scope, 401, "invalid_token", str(refused))
        if not principal.scopes & self._settings.scopes_supported:
            return self._deny(scope, 403, "insufficient_scope", "token carries none of this server's scopes", principal)
        # The app below never sees the raw token, so nothing can forward it upstream.
        scope["headers"] = headers
        attach_principal(scope, principal)
        # The MCP SDK binds each session to the credential that created it (a request for another
        # principal's session gets 404); it reads the caller from `scope["user"]`. No raw token here.
        # A sub-agent presenting a capability never shares its delegator's MCP session.
        client = principal.subject if principal.delegation is None else f"{principal.subject} via {principal.token_id}"
        scope["user"] = self._user(client, principal)
        return None

    def _user(self, client: str, principal: Principal) -> AuthenticatedUser:
        """The SDK's view of the caller, built once per (client, subject, scopes) and reused.

        FastMCP's own `AccessToken` type, so FastMCP need not convert it on each of its lookups.
        """
        key = (client, principal.subject, principal.scopes)
        user = self._users.get(key)
        if user is None:
            user = self._users[key] = AuthenticatedUser(AccessToken(
                token="", client_id=client, subject=principal.subject, scopes=sorted(principal.scopes),
                claims={"iss": self._settings.issuer}))
            if len(self._users) > VERIFIED_CACHE_SIZE:
                self._users.popitem(last=False)
        return user


def protect_app(app: ASGIApp, settings: AuthSettings, verifier: BearerTokenVerifier | None = None,
                on_refusal: RefusalHook | None = None) -> BearerAuthApp:
    """Wrap the MCP HTTP app with bearer auth and the RFC 9728 metadata endpoint.

    Example:
        >>> settings = AuthSettings.from_env(os.environ)
        >>> app = protect_app(server.http_app(path="/mcp"), settings) if settings else server.http_app(path="/mcp")
    """
    return BearerAuthApp(app, verifier or BearerTokenVerifier(settings), on_refusal)
