"""Inbound OAuth 2.1 resource-server auth: verify bearer JWTs in front of `/mcp` (RFC 6750/8707/9728).

Threat model: anyone who reaches the port may send a forged, replayed, expired or mis-targeted
token. We accept only RS256/ES256 signatures from keys in the configured issuer's JWKS (so `none`
and HS/RS key confusion are impossible), require `iss`, `aud` (this server's canonical URL),
`exp` and `sub`, and allow a small clock leeway. An unknown `kid` triggers a JWKS refresh at most
once per interval, so junk tokens cannot turn us into a JWKS-fetching amplifier. Tokens are taken
only from the Authorization header: a query-string token is refused (it leaks into logs and
history). The header is stripped before the MCP app sees the request, so no tool or upstream
client can forward the caller's token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit
from urllib.request import url2pathname

import httpx
import jwt
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.capabilities.dev_issuer import DEFAULT_AUDIENCE, DEV_ISSUER_ID, DevIssuer
from app.capabilities.principal import Principal, attach_principal

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
# The key type each algorithm must be verified with; an RSA key is never an HMAC secret.
KEY_TYPE_FOR_ALGORITHM = {"RS256": "RSA", "ES256": "EC"}
REQUIRED_CLAIMS = ("iss", "aud", "exp", "sub")
# Query parameters that would carry a token (RFC 6750 §2.3); refused, never read.
QUERY_TOKEN_PARAMS = frozenset({"access_token"})
PUBLIC_PATHS = frozenset({"/healthz"})
METADATA_PATH = "/.well-known/oauth-protected-resource"
JWKS_REFRESH_MIN_INTERVAL_S = 30.0
JWKS_MAX_AGE_S = 3600.0
JWKS_FETCH_TIMEOUT_S = 5.0
# Verified tokens are remembered briefly (keyed by their hash, never the token) because parsing
# and checking a JWT costs more than the rest of the capability stack together.
VERIFIED_CACHE_SIZE = 1024
VERIFIED_CACHE_TTL_S = 60.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class AuthError(Exception):
    """A token was refused; the message is safe to return to the caller."""


class AuthConfigError(ValueError):
    """The auth configuration is incomplete or unsafe; the server must not start."""


def _reject(reason: str) -> NoReturn:
    raise AuthError(reason)


@dataclass(frozen=True)
class AuthSettings:
    """Where tokens come from and whom they must be for.

    Args:
        issuer: Expected `iss`.
        jwks_url: The issuer's JWKS (https, http on loopback, or a `file://` path for the dev issuer).
        audience: This server's canonical URL, for example `https://mcp.example.com/mcp`; the `aud`.
        algorithms: Allowed signature algorithms, a subset of RS256/ES256.
        leeway: Clock skew tolerated on `exp`/`nbf`, in seconds.
        scopes_supported: Scopes advertised in the metadata; a token with none of them gets 403.

    Example:
        >>> settings = AuthSettings("https://login.example.com/", "https://login.example.com/jwks",
        ...                         "https://mcp.example.com/mcp")
    """

    issuer: str
    jwks_url: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: int = 30
    scopes_supported: frozenset[str] = field(default_factory=lambda: frozenset({"mcp:read", "mcp:write"}))

    def __post_init__(self) -> None:
        if not set(self.algorithms) <= ALLOWED_ALGORITHMS or not self.algorithms:
            raise AuthConfigError(f"algorithms must be a non-empty subset of {sorted(ALLOWED_ALGORITHMS)}")
        jwks = urlsplit(self.jwks_url)
        if jwks.scheme not in {"https", "file"} and not (jwks.scheme == "http" and jwks.hostname in LOOPBACK_HOSTS):
            raise AuthConfigError("jwks_url must be https (http only on loopback, file:// for the dev issuer)")
        if not self.issuer or urlsplit(self.audience).scheme not in {"http", "https"}:
            raise AuthConfigError("issuer must be set and audience must be the server's canonical URL")

    @property
    def metadata_url(self) -> str:
        """Where the protected-resource metadata lives (pointed at by WWW-Authenticate)."""
        parts = urlsplit(self.audience)
        return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}"

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected-resource metadata document."""
        return {"resource": self.audience, "authorization_servers": [self.issuer],
                "scopes_supported": sorted(self.scopes_supported), "bearer_methods_supported": ["header"]}

    @classmethod
    def from_env(cls, environ: Mapping[str, str], dev_state_dir: Path | None = None) -> AuthSettings | None:
        """Settings from `MCP_AUTH_*`; None when `MCP_AUTH_ISSUER` is unset (auth disabled).

        `MCP_AUTH_ISSUER=dev` trusts the local dev issuer's key pair (created if missing).
        """
        issuer = environ.get("MCP_AUTH_ISSUER", "").strip()
        if not issuer:
            return None
        audience = environ.get("MCP_AUTH_AUDIENCE", "").strip()
        if issuer == "dev":
            dev = DevIssuer(dev_state_dir) if dev_state_dir else DevIssuer()
            dev.ensure()
            return cls(DEV_ISSUER_ID, dev.jwks_path.resolve().as_uri(), audience or DEFAULT_AUDIENCE)
        jwks_url = environ.get("MCP_AUTH_JWKS_URL", "").strip()
        if not jwks_url or not audience:
            # Fail closed: half-configured auth must not silently become no auth.
            raise AuthConfigError("MCP_AUTH_ISSUER is set, so MCP_AUTH_JWKS_URL and MCP_AUTH_AUDIENCE are required")
        return cls(issuer, jwks_url, audience)


class JwksCache:
    """The issuer's signing keys, cached; an unknown `kid` refreshes at most once per interval.

    Args:
        url: JWKS location (https/http/file).
        clock: Monotonic seconds; injectable for tests.
        min_refresh_interval_s: Floor between fetches triggered by unknown kids.
    """

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic,
                 min_refresh_interval_s: float = JWKS_REFRESH_MIN_INTERVAL_S) -> None:
        self._url = url
        self._clock = clock
        self._min_interval = min_refresh_interval_s
        self._keys: dict[str, dict[str, Any]] = {}
        # Parsed key objects per (kid, alg): building one from a JWK costs more than a signature check.
        self._parsed: dict[tuple[str, str], Any] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self) -> dict[str, Any]:
        parts = urlsplit(self._url)
        if parts.scheme == "file":
            return json.loads(Path(url2pathname(parts.path)).read_text(encoding="utf-8"))
        async with httpx.AsyncClient(timeout=JWKS_FETCH_TIMEOUT_S, follow_redirects=False) as client:
            response = await client.get(self._url)
            response.raise_for_status()
            return response.json()

    async def _refresh(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            document = await self._fetch()
        except (OSError, ValueError, httpx.HTTPError):
            return  # keep the keys we had; the token in hand fails as "unknown signing key"
        keys = document.get("keys") if isinstance(document, dict) else None
        if isinstance(keys, list):
            self._keys = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
            self._parsed = {}

    async def key(self, kid: str, algorithm: str) -> Any:
        """The verification key for `kid`, refreshing when it is unknown (rate-limited) or stale.

        Raises `AuthError` when no key fits: unknown kid, or a key whose type or declared
        algorithm differs from the token's (an RSA key is never used as an HMAC secret).
        """
        async with self._lock:
            age = None if self._fetched_at is None else self._clock() - self._fetched_at
            if age is None or age >= JWKS_MAX_AGE_S or (kid not in self._keys and age >= self._min_interval):
                await self._refresh()
            parsed = self._parsed.get((kid, algorithm))
            if parsed is not None:
                return parsed
            jwk = self._keys.get(kid)
            if jwk is None:
                _reject("unknown signing key")
            if jwk.get("kty") != KEY_TYPE_FOR_ALGORITHM[algorithm] or jwk.get("alg", algorithm) != algorithm:
                _reject("signing key does not match the token algorithm")
            try:
                parsed = self._parsed[(kid, algorithm)] = jwt.PyJWK(jwk, algorithm=algorithm).key
            except jwt.PyJWKError:
                _reject("signing key is unusable")
            return parsed


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(item for item in items if isinstance(item, str))


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or raises `AuthError`.

    Args:
        settings: Issuer, audience and algorithms.
        jwks: Key cache (defaults to one for `settings.jwks_url`).
    """

    def __init__(self, settings: AuthSettings, jwks: JwksCache | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.jwks = jwks or JwksCache(settings.jwks_url)
        self._wall_clock = wall_clock
        # token hash -> (principal, exp, remember-until), all wall-clock seconds
        self._verified: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """A principal for a valid token; a recently verified token is checked only for expiry."""
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
        key = await self.jwks.key(kid, algorithm)
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
        jti = claims.get("jti")
        principal = Principal(subject=str(claims["sub"]), scopes=_scopes(claims),
                              token_id=jti if isinstance(jti, str) else None)
        return principal, float(claims["exp"])


class BearerAuthApp:
    """ASGI wrapper: metadata endpoint, public health check, bearer auth for everything else.

    Args:
        app: The MCP Starlette app (`server.http_app(path="/mcp")`).
        verifier: Verifies bearer tokens.
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self._app = app
        self._verifier = verifier
        self._settings = verifier.settings

    def _challenge(self, error: str | None = None, description: str | None = None) -> str:
        parts = [f'resource_metadata="{self._settings.metadata_url}"',
                 f'scope="{" ".join(sorted(self._settings.scopes_supported))}"']
        if error:
            parts.insert(0, f'error="{error}", error_description="{description}"')
        return "Bearer " + ", ".join(parts)

    def _deny(self, status: int, error: str | None, description: str) -> Response:
        body = {"error": error or "unauthorized", "error_description": description}
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
            return JSONResponse({"error": "invalid_request",
                                 "error_description": "tokens are accepted only in the Authorization header"},
                                status_code=400)
        path = scope.get("path", "")
        if path == METADATA_PATH or path.startswith(METADATA_PATH + "/"):
            return JSONResponse(self._settings.metadata())
        if path in PUBLIC_PATHS:
            return None
        headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() != b"authorization"]
        credentials = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
        if len(credentials) != 1 or not credentials[0][:7].lower() == b"bearer ":
            return self._deny(401, None, "bearer token required")
        try:
            principal = await self._verifier.verify(credentials[0][7:].decode("latin-1").strip())
        except AuthError as refused:
            return self._deny(401, "invalid_token", str(refused))
        if not principal.scopes & self._settings.scopes_supported:
            return self._deny(403, "insufficient_scope", "token carries none of this server's scopes")
        # The app below never sees the raw token, so nothing can forward it upstream.
        scope["headers"] = headers
        attach_principal(scope, principal)
        # The MCP SDK binds each session to the credential that created it (a request for another
        # principal's session gets 404); it reads the caller from `scope["user"]`. No raw token here.
        scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=principal.subject, subject=principal.subject,
                                                      scopes=sorted(principal.scopes),
                                                      claims={"iss": self._settings.issuer}))
        return None


def protect_app(app: ASGIApp, settings: AuthSettings, verifier: TokenVerifier | None = None) -> BearerAuthApp:
    """Wrap the MCP HTTP app with bearer auth and the RFC 9728 metadata endpoint.

    Example:
        >>> settings = AuthSettings.from_env(os.environ)
        >>> app = protect_app(server.http_app(path="/mcp"), settings) if settings else server.http_app(path="/mcp")
    """
    return BearerAuthApp(app, verifier or TokenVerifier(settings))
