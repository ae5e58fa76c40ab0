"""Inbound bearer auth over real HTTP: every token rule holds, and each broken token is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from contextlib import ExitStack

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastmcp.server.auth import AccessToken as FastMcpAccessToken
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.auth.resource_server import AuthError, BearerTokenVerifier, parse_oauth_jwks, protect_app
from app.auth.settings import AuthConfigError, AuthSettings
from app.jwks import JwksCache
from tests.support.stack import FakeClock, Stack, free_port, serve

ISSUER = "https://issuer.example.test/"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ROTATED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def _jwk(key, kid: str, alg: str) -> dict:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "alg": alg, "use": "sig"}


class Harness:
    """A JWKS stand-in plus the toy MCP server behind `protect_app`, both on 127.0.0.1."""

    def __init__(self, tmp_path) -> None:
        self.jwks = {"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]}
        self.jwks_hits = 0
        self.clock = FakeClock()
        self.stack = Stack(tmp_path, auth_enabled=True)

    def jwks_app(self) -> Starlette:
        async def keys(request):
            self.jwks_hits += 1
            return JSONResponse(self.jwks)
        return Starlette(routes=[Route("/jwks", keys)])

    def mint(self, key=RSA_KEY, kid: str = "rsa-1", alg: str = "RS256", **overrides) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": self.audience, "sub": "alice", "iat": now, "nbf": now,
                  "exp": now + 300, "jti": "t-1", "scope": "mcp:read", **overrides}
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    with ExitStack() as running:
        jwks_base = running.enter_context(serve(h.jwks_app()))
        port = free_port()
        h.audience = f"http://127.0.0.1:{port}/mcp"
        h.settings = AuthSettings(ISSUER, f"{jwks_base}/jwks", h.audience)
        verifier = BearerTokenVerifier(h.settings, JwksCache(parse_oauth_jwks, allow_file=True, clock=h.clock))
        app = protect_app(h.stack.server.http_app(path="/mcp"), h.settings, verifier)
        h.base = running.enter_context(serve(app, port))
        yield h


def _post(harness: Harness, token: str | None = None, query: str = "") -> httpx.Response:
    headers = dict(MCP_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{harness.base}/mcp{query}", headers=headers, json=INITIALIZE, timeout=10)


def _assert_refused(response: httpx.Response, status: int, error: str | None) -> None:
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="http://127.0.0.1:' in challenge
    assert '/.well-known/oauth-protected-resource"' in challenge
    if error:
        assert f'error="{error}"' in challenge


class TestMetadata:
    def test_protected_resource_metadata(self, harness):
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
            document = httpx.get(harness.base + path).json()
            assert document == {"resource": harness.audience, "authorization_servers": [ISSUER],
                                "scopes_supported": ["mcp:read", "mcp:write"], "bearer_methods_supported": ["header"]}

    def test_health_check_needs_no_token(self, harness):
        assert httpx.get(f"{harness.base}/healthz").json()["breakers"]["github"]["state"] == "closed"


class TestValidTokens:
    @pytest.mark.parametrize(("key", "kid", "alg"), [(RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256")])
    def test_allowed_algorithms_pass(self, harness, key, kid, alg):
        assert _post(harness, harness.mint(key, kid, alg)).status_code == 200

    def test_app_only_token_takes_its_scopes_from_app_roles(self, harness):
        # Issue 12: a client-credentials token from Entra carries `roles`, no `scp`.
        assert _post(harness, harness.mint(scope=None, roles=["mcp:read"])).status_code == 200

    def test_expiry_within_leeway_passes(self, harness):
        assert _post(harness, harness.mint(exp=int(time.time()) - 10)).status_code == 200

    async def test_mcp_session_sees_its_principal_and_scopes(self, harness):
        token = harness.mint(sub="alice", scope="mcp:read")
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        async with streamable_http_client(f"{harness.base}/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {tool.name for tool in (await session.list_tools()).tools}
                status = await session.call_tool("attestation_status", {})
                denied = await session.call_tool("send_notification", {"message": "hi"})
        await client.aclose()
        assert "query_database" in names and "send_notification" not in names and "debug_dump_env" not in names
        assert status.structured_content["saw_authorization"] is False, "the raw token must not reach tools"
        assert denied.is_error and "insufficient scope" in denied.content[0].text
        harness.stack.audit.close()
        assert {c["principal"] for c in harness.stack.calls()} == {"alice"}
        assert token not in harness.stack.audit_path.read_text()

    async def test_a_jwt_principal_carries_its_expiry(self, harness):
        token = harness.mint(exp=int(time.time()) + 120)
        principal = await BearerTokenVerifier(harness.settings).verify(token)
        assert principal.expires_at == float(jwt.decode(token, options={"verify_signature": False})["exp"])


class TestRefusedTokens:
    def test_missing_token_gets_401_pointing_at_metadata(self, harness):
        _assert_refused(_post(harness), 401, None)

    def test_capability_token_without_a_capability_verifier_gets_401(self, harness):
        from app.delegation.keys import CapabilityRoot
        from tests.delegation.helpers import minted

        token = minted(CapabilityRoot.per_process())
        response = _post(harness, token)
        _assert_refused(response, 401, "invalid_token")
        assert "capability tokens are not accepted" in response.text and token[10:40] not in response.text

    def test_non_bearer_scheme_gets_401(self, harness):
        response = httpx.post(f"{harness.base}/mcp", headers={**MCP_HEADERS, "Authorization": "Basic dTpw"}, json=INITIALIZE)
        _assert_refused(response, 401, None)

    @pytest.mark.parametrize(("overrides", "reason"), [
        ({"aud": "https://other.example.test/mcp"}, "audience"),
        ({"iss": "https://evil.example.test/"}, "issuer"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 300}, "invalid token"),
        ({"exp": None}, "invalid token"),
        ({"sub": None}, "invalid token"),
        ({"sub": "alice\x1fmallory"}, "printable"),  # would pose as the session registry's owner separator
        ({"sub": "alice\nINFO forged log line"}, "printable"),
        ({"sub": ""}, "printable"),
        ({"sub": "alice\u202emallory"}, "printable"),  # a bidi override that reorders how logs read
        ({"sub": "alice\u2028x"}, "printable"),
        ({"sub": "x" * 257}, "printable"),
        ({"sub": 42}, "invalid token"),
    ])
    def test_bad_claims_get_401(self, harness, overrides, reason):
        response = _post(harness, harness.mint(**overrides))
        _assert_refused(response, 401, "invalid_token")
        assert reason in response.json()["error_description"]

    def test_alg_none_is_refused(self, harness):
        claims = jwt.decode(harness.mint(), options={"verify_signature": False})
        token = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})
        response = _post(harness, token)
        _assert_refused(response, 401, "invalid_token")
        assert "algorithm not allowed" in response.json()["error_description"]

    def test_hs256_signed_with_the_public_key_is_refused(self, harness):
        public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        claims = jwt.decode(harness.mint(), options={"verify_signature": False})
        header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
        body = jwt.utils.base64url_encode(json.dumps(claims).encode())
        signature = jwt.utils.base64url_encode(hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest())
        response = _post(harness, (header + b"." + body + b"." + signature).decode())
        _assert_refused(response, 401, "invalid_token")

    def test_rs256_header_on_an_ec_key_is_refused(self, harness):
        response = _post(harness, harness.mint(RSA_KEY, "ec-1", "RS256"))
        assert "does not match" in response.json()["error_description"]

    def test_tampered_signature_is_refused(self, harness):
        token = harness.mint()
        _assert_refused(_post(harness, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")), 401, "invalid_token")

    def test_token_without_any_server_scope_gets_403(self, harness):
        _assert_refused(_post(harness, harness.mint(scope="profile email")), 403, "insufficient_scope")

    def test_roles_never_widen_a_token_that_has_scopes(self, harness):
        # Issue 12: Entra puts app roles in `roles`; a delegated token keeps only what it asked for.
        _assert_refused(_post(harness, harness.mint(scope=None, scp="profile", roles=["mcp:write"])), 403,
                        "insufficient_scope")

    def test_token_in_query_string_is_refused_even_with_a_good_header(self, harness):
        token = harness.mint()
        response = _post(harness, token, query=f"?access_token={token}")
        assert response.status_code == 400 and "Authorization header" in response.json()["error_description"]


class TestJwksRefresh:
    def test_unknown_kid_refreshes_once_then_fails(self, harness):
        assert _post(harness, harness.mint()).status_code == 200
        hits = harness.jwks_hits
        for _ in range(3):
            response = _post(harness, harness.mint(ROTATED_KEY, "rsa-2"))
            assert "unknown signing key" in response.json()["error_description"]
        assert harness.jwks_hits == hits, "unknown kids within the interval must not refetch"
        harness.clock.advance(31)
        _post(harness, harness.mint(ROTATED_KEY, "rsa-2"))
        assert harness.jwks_hits == hits + 1

    def test_rotated_key_is_picked_up_after_refresh(self, harness):
        assert _post(harness, harness.mint()).status_code == 200
        harness.jwks["keys"].append(_jwk(ROTATED_KEY, "rsa-2", "RS256"))
        harness.clock.advance(31)
        assert _post(harness, harness.mint(ROTATED_KEY, "rsa-2")).status_code == 200


class TestSettings:
    @pytest.mark.parametrize(("jwks_url", "algorithms"), [
        ("http://idp.example.test/jwks", ("RS256",)),
        ("https://idp.example.test/jwks", ("HS256",)),
        ("https://idp.example.test/jwks", ()),
    ])
    def test_unsafe_settings_are_refused(self, jwks_url, algorithms):
        with pytest.raises(AuthConfigError):
            AuthSettings(ISSUER, jwks_url, "https://mcp.example.test/mcp", algorithms=algorithms)

    def test_env_without_issuer_means_auth_off(self):
        assert AuthSettings.from_env({}) is None

    def test_half_configured_env_is_refused(self):
        with pytest.raises(AuthConfigError, match="MCP_AUTH_JWKS_URL"):
            AuthSettings.from_env({"MCP_AUTH_ISSUER": ISSUER})

    def test_full_env(self):
        settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": ISSUER, "MCP_AUTH_JWKS_URL": "https://idp.example.test/jwks",
                                          "MCP_AUTH_AUDIENCE": "https://mcp.example.test/mcp"})
        assert settings.metadata_url == "https://mcp.example.test/.well-known/oauth-protected-resource"


class TestVerifiedTokenCache:
    async def _verifier(self, tmp_path, clock: FakeClock) -> tuple[BearerTokenVerifier, str]:
        from app.auth.dev_issuer import DevIssuer
        issuer = DevIssuer(tmp_path / "dev")
        settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": "dev", "MCP_AUTH_AUDIENCE": "http://127.0.0.1:1/mcp"},
                                         dev_state_dir=tmp_path / "dev")
        clock.now = time.time()
        return BearerTokenVerifier(settings, wall_clock=clock), issuer.mint(scopes=["mcp:read"], audience=settings.audience,
                                                                      ttl_s=120)

    async def test_cached_token_is_accepted_again(self, tmp_path):
        clock = FakeClock()
        verifier, token = await self._verifier(tmp_path, clock)
        first = await verifier.verify(token)
        clock.advance(30)
        assert await verifier.verify(token) == first

    async def test_cached_token_past_its_expiry_is_refused(self, tmp_path):
        clock = FakeClock()
        verifier, token = await self._verifier(tmp_path, clock)
        await verifier.verify(token)
        clock.advance(120 + verifier.settings.leeway + 1)  # past exp + leeway; the cache must not vouch for it
        with pytest.raises(AuthError, match="expired"):
            await verifier.verify(token)


class TestTheCallerAsTheSdkSeesIt:
    async def test_the_user_carries_fastmcps_own_token_type_and_never_the_token(self, harness):
        token = harness.mint(sub="alice", scope="mcp:read")
        seen: dict = {}

        async def inner(scope, receive, send) -> None:
            seen.update(scope)

        app = protect_app(inner, harness.settings, BearerTokenVerifier(harness.settings))
        scope = {"type": "http", "method": "POST", "path": "/mcp", "query_string": b"",
                 "headers": [(b"authorization", f"Bearer {token}".encode())]}
        await app(scope, None, None)
        access = seen["user"].access_token
        # FastMCP converts any other type on each of its per-call lookups (issue 15).
        assert isinstance(access, FastMcpAccessToken)
        assert access.subject == "alice" and access.scopes == ["mcp:read"] and access.token == ""
        assert all(name != b"authorization" for name, _ in seen["headers"])
